"""What the broker's workers offer: the schema the gateway checks pipelines against and lists.

Workers declare their operations and parameters in READY; the broker answers INFO with
them (``ops``). The gateway checks each pipeline against that schema before it stores an
upload, so a pipeline no worker can run is refused at once (422, the registry's message
and did-you-mean) instead of becoming a stored, failed job, and the upload form and
``GET /api/v1/operations`` list what can run here, not what this gateway's own copy of
the engine has (a worker started ``--no-learned`` offers no ``faces``; another engine
version may offer more or less).

The rule when the broker cannot say:

- **Schema known** (INFO lists the workers' declarations): names and parameters are
  checked with ``pipeline_syntax.check``; the engine gets the canonical text. Before an
  unknown operation is refused, the schema is fetched again if it is older than
  ``RECHECK_AFTER_S``, so a worker that has just joined counts.
- **No worker has declared its operations** (none connected yet, or workers too old to
  say), **INFO cut to names** (``truncated``: names only, and maybe not all of them), or a
  declaration this gateway cannot read, or **an operation declared differently** by workers
  of different engine versions (INFO's ``ops_differ``; INFO lists one declaration of each,
  the broker checks a pipeline against every one) for a pipeline that uses it: the syntax only (``pipeline_syntax.split``); the
  pipeline goes as written and the broker (or a worker) decides, as for any client.
- **Broker unreachable**: the syntax is checked, then ``BrokerUnavailable`` (503), as the
  gateway answered before: nothing is stored, since nothing could run.

Listings fall back to the gateway's own registry in those cases (``source: "local"``,
with a ``note`` saying why). Limits: a pipeline whose steps are each offered by some
worker, but by no one worker, passes here and is refused by the broker; and a worker
that leaves counts only when the schema is next fetched (``FRESH_S``).

One fetch at a time: callers that find the schema stale share one INFO request. Every
INFO answer the link gets (the status page's sampler, "is the broker up?" probes)
refreshes the schema too. An answer without a schema is believed for ``UNSURE_FRESH_S``
only, so the first worker to join counts within a second.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from .. import errors as E
from .. import ops
from .. import pipeline_syntax as syntax
from .link import EngineLink

log = logging.getLogger("engine.web")

FRESH_S = 5.0  # a schema this recent is used as it is
RECHECK_AFTER_S = 0.5  # an unknown operation is checked against a new INFO if the schema is older
UNSURE_FRESH_S = 1.0  # an answer without a schema (broker down, no worker yet, cut short) is believed
# this long: it may change any moment, and a page with its form still asks only once


@dataclass(frozen=True)
class Offer:
    """One INFO answer, read: ``schema`` (operation name -> declaration) or, when the broker
    cannot say, None and ``note`` saying why; ``down`` when the broker did not answer."""

    schema: dict[str, dict] | None
    at_s: float  # time.monotonic() of the answer
    note: str = ""
    down: bool = False
    differ: frozenset = frozenset()  # operations the workers declare differently (engine versions): the broker checks


def offer_of(info: Any, at_s: float) -> Offer:
    """The schema in an INFO answer, or why there is none to check against."""
    info = info if isinstance(info, dict) else {}
    if info.get("truncated"):
        return Offer(None, at_s, "the broker's INFO answer was cut to operation names (too many workers "
                                 "or operations to list)")
    declared = info.get("ops") if isinstance(info.get("ops"), dict) else {}
    readable = [(name, d) for name, d in declared.items() if isinstance(name, str) and isinstance(d, dict)]
    schema = dict(sorted(readable, key=lambda item: item[0]))
    if not schema:
        return Offer(None, at_s, "no connected worker has declared its operations (none connected yet, "
                                 "or workers too old to say)")
    differ = info.get("ops_differ")
    differ = frozenset(n for n in differ if isinstance(n, str)) if isinstance(differ, list) else frozenset()
    if differ:  # INFO lists one declaration of each; the broker checks against every one
        return Offer(schema, at_s, f"workers of different engine versions declare {', '.join(sorted(differ))} "
                                   "differently; the broker checks pipelines that use them", differ=differ)
    return Offer(schema, at_s)


def unchecked_text(pipeline: str | list) -> str:
    """A pipeline whose syntax is right, for the broker to check: text as written, a
    structured one in the text form (its parameters as given, not checked)."""
    if isinstance(pipeline, str):
        return pipeline.strip()
    return syntax.canonical(syntax.split(pipeline))


class WorkerSchema:
    def __init__(self, link: EngineLink, *, fresh_s: float = FRESH_S) -> None:
        self.link = link
        self.fresh_s = fresh_s
        self._offer: Offer | None = None
        self._fetch: asyncio.Future | None = None  # the INFO request under way, shared
        link.on_info = self.observe

    def observe(self, info: dict) -> None:
        """Any INFO answer the link got: the newest schema."""
        self._offer = offer_of(info, time.monotonic())

    async def current(self, *, max_age_s: float | None = None) -> Offer:
        """The schema, fetched again if older than ``max_age_s`` (``fresh_s``)."""
        offer = self._offer
        if offer is not None:
            limit_s = self.fresh_s if max_age_s is None else max_age_s
            if offer.schema is None:
                limit_s = min(limit_s, UNSURE_FRESH_S)
            if time.monotonic() - offer.at_s < limit_s:
                return offer
        if self._fetch is None or self._fetch.done():
            self._fetch = asyncio.ensure_future(self._refresh())
        return await asyncio.shield(self._fetch)

    async def _refresh(self) -> Offer:
        try:
            self.observe(await self.link.info())
        except E.BrokerUnavailable as exc:
            self._offer = Offer(None, time.monotonic(), str(exc), down=True)
        except E.EngineError as exc:  # answered, but not INFO (refused, say): the broker decides
            self._offer = Offer(None, time.monotonic(), f"the broker did not answer INFO: {exc}")
        return self._offer  # type: ignore[return-value]

    async def check(self, pipeline: str | list) -> str:
        """The text to send to the engine: canonical when the schema is known, else the
        pipeline as written once its syntax is right. Raises the PipelineError a worker
        would (``bad_pipeline``, ``unknown_operation``, ``bad_parameter``), or
        BrokerUnavailable."""
        syntax.split(pipeline)  # a syntax error needs no broker to be refused
        offer = await self.current()
        try:
            return self._checked(pipeline, offer)
        except E.UnknownOperation:
            if time.monotonic() - offer.at_s < RECHECK_AFTER_S:
                raise
            # Maybe a worker that offers it has joined since: ask again before refusing.
            return self._checked(pipeline, await self.current(max_age_s=RECHECK_AFTER_S))

    def _checked(self, pipeline: str | list, offer: Offer) -> str:
        if offer.down:
            raise E.BrokerUnavailable(offer.note)
        if offer.schema is None or offer.differ & (syntax.step_names(pipeline) or frozenset()):
            return unchecked_text(pipeline)
        try:
            return syntax.canonical(syntax.check(pipeline, offer.schema))
        except E.PipelineError:
            raise
        except Exception as exc:  # a declaration this gateway cannot read: the broker and its workers decide
            log.debug("could not check pipeline %.80r against the workers' schema: %s", pipeline, exc)
            return unchecked_text(pipeline)

    async def listing(self) -> dict:
        """``{"operations", "source", "note"?}``: what the workers offer, or this gateway's
        own registry (``source: "local"``) when the broker cannot say, and why."""
        offer = await self.current()
        if offer.schema is not None:
            return {"operations": offer.schema, "source": "workers", **({"note": offer.note} if offer.differ else {})}
        return {"operations": ops.describe(), "source": "local",
                "note": f"{offer.note}; these are the gateway's own operations, which its workers "
                        "may not all offer"}
