"""Admission: an ordered list of small checks, each owning the request options it reads
(dramatiq's middleware: ``AgeLimit.actor_options = {"max_age"}``).

``Broker.submit`` builds one ``Admission`` per request and runs ``CHECKS`` over it in order.
A check reads the request, may fill in what it learnt (a deadline, a trace id, the checked
pipeline, a cache key) and returns None to let the request go on, or a ``Verdict``: the
request is dropped (a resend), refused (busy, quota: counted under that code), invalid (a bad
option), failed (its pipeline cannot run here) or answered (from the result cache). An option
that no check claims is invalid too: a typo is an error, not ignored.

    OPTIONS = frozenset().union(*(c.options for c in CHECKS))   # what a client may send
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from .. import deadlines, tracing
from ..errors import BadParameter, BusyError, ImageError, ProtocolError, QuotaError, TaskError, UnknownOperation
from ..pipeline_syntax import step_names
from ..protocol import Request
from .front import Origin
from .pipelines import Checked
from .state import Payload, payload_bytes

if TYPE_CHECKING:
    from .core import Broker

CACHE_KEY = "cache"

# How a verdict is answered (see Broker._apply).
DROP = "drop"  # nothing is sent: a resend of a task held already
REFUSED = "refused"  # counted under its code (busy, quota); the client may retry later
INVALID = "invalid"  # a bad option: counted as a failure of that code
FAILED = "failed"  # the pipeline cannot run here: counted as a failed task, kept in recent failures' counts
ANSWERED = "answered"  # a result was sent (cache hit)


@dataclass(slots=True)
class Verdict:
    kind: str
    code: str = ""
    message: str = ""


@dataclass(slots=True, eq=False)
class Admission:
    """One request as the checks see it, and what they learnt about it."""

    origin: Origin
    request: Request
    payload: Payload
    now_s: float
    due_s: float | None = None
    trace_id: str | None = None
    needs: frozenset | None = None
    checked: Checked | None = None
    cache_key: str | None = None

    @property
    def options(self) -> dict:
        return self.request.options or {}


class Check:
    """One step of admission; ``options``: the request options it reads (and answers for)."""

    options: ClassVar[frozenset[str]] = frozenset()

    def __call__(self, broker: Broker, a: Admission) -> Verdict | None:
        raise NotImplementedError


class Resend(Check):
    """A task already held (the client resent it after a timeout or a broker restart)."""

    def __call__(self, broker: Broker, a: Admission) -> Verdict | None:
        return Verdict(DROP) if broker.holds(a.origin, a.request.task_id) else None


class Reference(Check):
    """An image by reference (a shared-memory segment's name) only from a client that proved it
    shares the broker's host (``engine.shm``): another's name would be a file of this host."""

    def __call__(self, broker: Broker, a: Admission) -> Verdict | None:
        if not a.request.ref or a.origin.front.by_reference(a.origin):
            return None
        return Verdict(INVALID, ProtocolError.code,
                       "this task names a shared-memory segment, but its client has not proven it shares the "
                       "broker's host (shared memory is off on this broker, or the client is elsewhere): send the "
                       "image itself")


class Busy(Check):
    """Shutting down, the queues full (in tasks, or in image bytes: all clients', or this
    client's), or the client not reading its results. A client with nothing waiting may
    always queue one image, so an image of any accepted size can run."""

    def __call__(self, broker: Broker, a: Admission) -> Verdict | None:
        busy = "the broker is shutting down" if broker.stopping() else \
            f"the broker's queue is full ({broker.config.max_queue} tasks waiting)" \
            if broker.queue_depth() >= broker.config.max_queue else self._bytes(broker, a) \
            or a.origin.front.refusal(a.origin)
        return Verdict(REFUSED, BusyError.code, f"{busy}; retry later") if busy is not None else None

    @staticmethod
    def _bytes(broker: Broker, a: Admission) -> str | None:
        config, size = broker.config, payload_bytes(a.payload)
        mine = broker.queued_bytes(a.origin)
        if mine and mine + size > config.client_max_queue_bytes:
            return (f"this client's images waiting for a worker fill its share of the queue ({_mib(mine)} of "
                    f"{_mib(config.client_max_queue_bytes)}, --client-max-queue-mb)")
        everyone = broker.queued_bytes()
        if everyone and everyone + size > config.max_queue_bytes:
            return (f"the images waiting for a worker fill the broker's queue ({_mib(everyone)} of "
                    f"{_mib(config.max_queue_bytes)}, --max-queue-mb)")
        return None


def _mib(size_bytes: int) -> str:
    return f"{size_bytes / 2**20:.1f} MiB"


class Quota(Check):
    def __call__(self, broker: Broker, a: Admission) -> Verdict | None:
        client = a.origin.client
        refusal = broker.quotas.check(client, broker.dispatcher.per_client.get(client, 0), a.now_s)
        return Verdict(REFUSED, QuotaError.code, refusal) if refusal is not None else None


class KnownOptions(Check):
    """Every option is one a check reads."""

    def __call__(self, broker: Broker, a: Admission) -> Verdict | None:
        unknown = sorted(set(a.options) - OPTIONS, key=str)
        if not unknown:
            return None
        return Verdict(INVALID, BadParameter.code,
                       f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(repr(u)[:64] for u in unknown[:5])}"
                       f" (known: {', '.join(sorted(OPTIONS))})")


class Deadline(Check):
    options = frozenset({deadlines.KEY})

    def __call__(self, broker: Broker, a: Admission) -> Verdict | None:
        try:
            a.due_s = deadlines.due_s(a.request.options, a.now_s)
        except TaskError as exc:
            return Verdict(INVALID, exc.code, exc.message)
        return None


class Trace(Check):
    options = frozenset({tracing.KEY})

    def __call__(self, broker: Broker, a: Admission) -> Verdict | None:
        try:
            a.trace_id = tracing.trace_id(a.request.options) if a.request.options else None
        except TaskError as exc:
            return Verdict(INVALID, exc.code, exc.message)
        return None


class Offered(Check):
    """Some connected worker offers every operation of the pipeline (Majordomo's unknown service)."""

    def __call__(self, broker: Broker, a: Admission) -> Verdict | None:
        a.needs = step_names(a.request.pipeline)
        if a.needs is not None and broker.dispatcher.can_run(a.needs) is False:
            return Verdict(FAILED, UnknownOperation.code, broker.unoffered(a.needs))
        return None


class Schema(Check):
    """Names and parameters against what the workers declared (memoised per pipeline text)."""

    def __call__(self, broker: Broker, a: Admission) -> Verdict | None:
        checked = broker.pipelines.check(a.request.pipeline)
        if isinstance(checked, TaskError):
            return Verdict(FAILED, checked.code, checked.message)
        a.checked = checked
        return None


class Cache(Check):
    """A result the cache holds is the answer; ``cache: false`` asks for a fresh one."""

    options = frozenset({CACHE_KEY})

    def __call__(self, broker: Broker, a: Admission) -> Verdict | None:
        wanted = a.options.get(CACHE_KEY, True)
        if not isinstance(wanted, bool):
            return Verdict(INVALID, BadParameter.code, f"options.{CACHE_KEY} must be true or false, got {wanted!r:.40}")
        canonical = a.checked.canonical if a.checked is not None else None
        if broker.cache is None or canonical is None or not wanted:
            return None
        data = a.payload
        if a.request.ref:  # the image by reference: the broker reads it to know its key
            try:
                data = broker.read_ref(a.payload)
            except OSError as exc:
                return Verdict(INVALID, ImageError.code, f"the image could not be read from shared memory: {exc}")
        a.cache_key = broker.cache_key(data, canonical)
        return Verdict(ANSWERED) if broker.answer_from_cache(a) else None


CHECKS: tuple[Check, ...] = (Resend(), Reference(), Busy(), Quota(), KnownOptions(), Deadline(), Trace(), Offered(),
                             Schema(), Cache())
OPTIONS: frozenset[str] = frozenset().union(*(c.options for c in CHECKS))
