"""What the broker's workers offer: the schema the gateway checks pipelines against and lists.

Workers declare their operations and parameters in READY; the broker answers INFO with
them (``ops``). The gateway checks each pipeline against that schema before it stores an
upload, so a pipeline no worker can run is refused at once (422, the registry's message
and did-you-mean) instead of becoming a stored, failed job, and the upload form and
``GET /api/v1/operations`` list what can run here, not what this gateway's own copy of
the engine has (a worker started ``--no-learned`` offers no ``faces``; another engine
version may offer more or less).

The checking itself is ``pipeline_syntax.offered(info).check``, the one checker the broker
and the command line use too; this module fetches INFO and keeps it fresh. The rule when
the broker cannot say:

- **Schema known** (INFO lists the workers' declarations): names and parameters are
  checked; the engine gets the canonical text. Before an
  unknown operation is refused, the schema is fetched again if it is older than
  ``RECHECK_AFTER_S``, so a worker that has just joined counts.
- **No worker has declared its operations** (none connected yet, or workers too old to
  say), **INFO cut to names** (``truncated``: names only, and maybe not all of them), or a
  declaration this gateway cannot read, or **an operation declared differently** by workers
  of different engine versions (INFO's ``ops_differ``; INFO lists one declaration of each,
  the broker checks a pipeline against every one) for a pipeline that uses it: the syntax only; the
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
import time
from dataclasses import dataclass
from typing import Any

from .. import errors as E
from .. import ops
from .. import pipeline_syntax as syntax
from .link import EngineLink

FRESH_S = 5.0  # a schema this recent is used as it is
RECHECK_AFTER_S = 0.5  # an unknown operation is checked against a new INFO if the schema is older
UNSURE_FRESH_S = 1.0  # an answer without a schema (broker down, no worker yet, cut short) is believed
# this long: it may change any moment, and a page with its form still asks only once
SHOWN_ENTRIES = 1024  # canonical texts of stored pipelines remembered per schema


@dataclass(frozen=True)
class Offer(syntax.Offered):
    """One INFO answer, read (``pipeline_syntax.offered``), as of ``at_s`` (time.monotonic());
    ``down`` when the broker did not answer."""

    at_s: float = 0.0
    down: bool = False


def offer_of(info: Any, at_s: float) -> Offer:
    """The schema in an INFO answer, or why there is none to check against."""
    read = syntax.offered(info)
    return Offer(read.schema, read.note, read.differ, at_s=at_s)


class WorkerSchema:
    def __init__(self, link: EngineLink, *, fresh_s: float = FRESH_S) -> None:
        self.link = link
        self.fresh_s = fresh_s
        self._offer: Offer | None = None
        self._fetch: asyncio.Future | None = None  # the INFO request under way, shared
        self._shown_for: Offer | None = None  # the offer ``_shown`` was made with
        self._shown: dict[str, str | None] = {}  # canonical_or_none's answers (one page of history asks often)
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
            self._offer = Offer(None, str(exc), at_s=time.monotonic(), down=True)
        except E.EngineError as exc:  # answered, but not INFO (refused, say): the broker decides
            self._offer = Offer(None, f"the broker did not answer INFO: {exc}", at_s=time.monotonic())
        return self._offer  # type: ignore[return-value]

    async def check(self, pipeline: str | list) -> str:
        """The text to send to the engine: canonical when the schema is known, else the
        pipeline as written once its syntax is right. Raises the PipelineError a worker
        would (``bad_pipeline``, ``unknown_operation``, ``bad_parameter``), or
        BrokerUnavailable."""
        if isinstance(pipeline, str) and not pipeline.strip():
            raise E.PipelineError("the pipeline is empty: add at least one step")
        syntax.check_syntax(pipeline)  # a syntax error needs no broker to be refused
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
        return offer.check(pipeline).text

    def canonical_or_none(self, pipeline: str) -> str | None:
        """The canonical text of a stored pipeline by the schema last seen, for showing
        history, which must not wait on the broker: None when there is none, or the
        pipeline no longer checks against it."""
        offer = self._offer
        if offer is None or offer.schema is None:
            return None
        if offer is not self._shown_for or len(self._shown) >= SHOWN_ENTRIES:
            self._shown_for, self._shown = offer, {}
        if pipeline not in self._shown:
            try:
                checked = offer.check(pipeline)
            except E.PipelineError:
                checked = None
            self._shown[pipeline] = checked.text if checked is not None and checked.steps is not None else None
        return self._shown[pipeline]

    async def listing(self) -> dict:
        """``{"operations", "source", "note"?}``: what the workers offer, or this gateway's
        own registry (``source: "local"``) when the broker cannot say, and why."""
        offer = await self.current()
        if offer.schema is not None:
            return {"operations": offer.schema, "source": "workers", **({"note": offer.note} if offer.differ else {})}
        return {"operations": ops.describe(), "source": "local",
                "note": f"{offer.note}; these are the gateway's own operations, which its workers "
                        "may not all offer"}
