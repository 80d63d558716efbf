"""The broker checks a pipeline once, against what its workers declared (no OpenCV here),
with the one checker (``pipeline_syntax.check_declarations``); this module remembers answers.

A task whose pipeline no worker can run, or whose parameters break the declared schema,
is answered at admission with the error a worker would give, and never queued. A valid
pipeline's canonical text (the result cache's key) comes from the same check. Answers
are remembered per pipeline text until the workers change: clients send the same few
pipelines again and again. What an operation declares as
data is checked here too (odd sizes, colour formats, text lengths, ``any_of``); the few checks
that are code still run on workers, and a worker's schema the broker cannot read is left to it.

Workers of different engine versions (a rolling upgrade) may declare an operation with
different parameters. A pipeline is checked against each distinct declaration: it is
admitted if one accepts it, and then goes only to workers whose declaration does; it is
refused with the error of the oldest declaration if none does.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from .. import pipeline_syntax as syntax
from ..errors import TaskError
from .state import Dispatcher

MEMO_ENTRIES = 1024  # distinct pipeline texts remembered


class Checked(NamedTuple):
    canonical: str | None  # None: the broker cannot tell (its workers decide)
    accepted: frozenset | None = None  # the declarations that accept it; None: every worker may run it


UNCHECKED = Checked(None)


class PipelineChecker:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self._memo: OrderedDict[str, Checked | TaskError] = OrderedDict()
        self._version = -1

    def check(self, pipeline: str | list) -> Checked | TaskError:
        """The canonical text and the declarations that accept it, or the error to answer
        with. ``canonical`` is None when the broker cannot tell (no worker has declared its
        operations yet, or an unreadable schema)."""
        d = self.dispatcher
        if d.workers_version != self._version:
            self._memo.clear()
            self._version = d.workers_version
        if not isinstance(pipeline, str):
            return self._check(pipeline)
        known = self._memo.get(pipeline)
        if known is None:
            known = self._memo[pipeline] = self._check(pipeline)
            if len(self._memo) > MEMO_ENTRIES:
                self._memo.popitem(last=False)
        return known

    def _check(self, pipeline: str | list) -> Checked | TaskError:
        try:
            text, accepted = syntax.check_declarations(pipeline, self.dispatcher.declarations())
        except TaskError as exc:
            return exc
        return UNCHECKED if text is None else Checked(text, accepted)
