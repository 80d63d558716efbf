"""The broker checks a pipeline once, against what its workers declared (no OpenCV here).

A task whose pipeline no worker can run, or whose parameters break the declared schema,
is answered at admission with the error a worker would give, and never queued. A valid
pipeline's canonical text (the result cache's key) comes from the same check. Answers
are remembered per pipeline text until the workers change: clients send the same few
pipelines again and again. The operations' cross-parameter checks are code, not data:
workers still run those, and a worker's schema the broker cannot read is left to the worker.
"""
from __future__ import annotations

import logging
from collections import OrderedDict

from .. import pipeline_syntax as syntax
from ..errors import TaskError
from .state import Dispatcher

log = logging.getLogger("engine.broker")

MEMO_ENTRIES = 1024  # distinct pipeline texts remembered


class PipelineChecker:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self._memo: OrderedDict[str, str | TaskError | None] = OrderedDict()
        self._version = -1

    def check(self, pipeline: str | list) -> str | TaskError | None:
        """The canonical text, the error to answer with, or None when the broker cannot
        tell (no worker has declared its operations yet, or an unreadable schema)."""
        d = self.dispatcher
        if d.workers_version != self._version:
            self._memo.clear()
            self._version = d.workers_version
        if not isinstance(pipeline, str):
            return self._check(pipeline)
        known = self._memo.get(pipeline, ...)
        if known is ...:
            known = self._memo[pipeline] = self._check(pipeline)
            if len(self._memo) > MEMO_ENTRIES:
                self._memo.popitem(last=False)
        return known

    def _check(self, pipeline: str | list) -> str | TaskError | None:
        schema = self.dispatcher.schema()
        if not schema:
            return None
        try:
            return syntax.canonical(syntax.check(pipeline, schema))
        except TaskError as exc:
            return exc
        except Exception as exc:  # a worker declared something this broker cannot read: its worker decides
            log.debug("could not check pipeline %.80r against the workers' schema: %s", pipeline, exc)
            return None
