"""The broker's routing state: LRU over free slots, requeue, heartbeats never free a slot."""
from types import SimpleNamespace

from engine.broker.front import Origin
from engine.broker.state import Dispatcher, Task
from engine.protocol import Request

FRONT = SimpleNamespace(name="front", dedups=True)  # what the dispatcher reads of a front end


def _task(d: Dispatcher, n: int, client: bytes = b"c1") -> Task:
    origin = Origin(FRONT, (client,))
    task = Task(jid=d.new_jid(), origin=origin, task_id=f"t{n}",
                request=Request(task_id=f"t{n}", pipeline="grayscale"), payload=b"", received_s=0.0)
    d.admit(task)
    return task


def _assign(d: Dispatcher) -> list[tuple[str, bytes]]:
    return [(t.task_id, w.wid) for t, w in d.assignments()]


def test_tasks_go_to_the_least_recently_used_worker_with_a_free_slot():
    d = Dispatcher(max_queue=100, liveness_s=6)
    d.ready(b"A", 2, 0.0)
    d.ready(b"B", 1, 0.0)
    for n in range(4):
        _task(d, n)
    # A (oldest) takes one, then B, then A again; the fourth waits: no free slot left.
    assert _assign(d) == [("t0", b"A"), ("t1", b"B"), ("t2", b"A")]
    assert [t.task_id for t in d.queue] == ["t3"]
    # B finishes first, so B is the one with a free slot and gets the waiting task.
    d.release(b"B", 2)
    assert _assign(d) == [("t3", b"B")]


def test_a_heartbeat_never_gives_a_busy_worker_a_slot():
    d = Dispatcher(max_queue=10, liveness_s=6)
    d.ready(b"A", 1, 0.0)
    _task(d, 0)
    _task(d, 1)
    assert _assign(d) == [("t0", b"A")]
    d.seen(b"A", 1.0)
    assert _assign(d) == []
    assert d.workers[b"A"].free == 0


def test_a_dead_workers_tasks_go_back_to_the_front_of_the_queue():
    d = Dispatcher(max_queue=10, liveness_s=6)
    d.ready(b"A", 2, 0.0)
    for n in range(3):
        _task(d, n)
    _assign(d)
    orphans = d.remove_worker(b"A")
    assert {t.task_id for t in orphans} == {"t0", "t1"}
    assert [t.task_id for t in d.queue] == ["t0", "t1", "t2"]
    assert all(t.attempts == 1 for t in orphans)
    d.ready(b"B", 3, 1.0)
    assert [w for _, w in _assign(d)] == [b"B", b"B", b"B"]


def test_workers_silent_past_their_liveness_are_expired():
    d = Dispatcher(max_queue=10, liveness_s=6)
    d.ready(b"A", 1, 0.0)
    d.ready(b"B", 1, 0.0)
    d.seen(b"B", 5.0)
    assert d.expired(6.5) == [b"A"]


def test_a_resent_task_id_from_the_same_client_is_recognised_but_not_from_another():
    d = Dispatcher(max_queue=10, liveness_s=6)
    _task(d, 0, client=b"c1")
    assert d.holds(Origin(FRONT, (b"c1",)), "t0")
    assert not d.holds(Origin(FRONT, (b"c2",)), "t0")


def test_queue_full_and_a_draining_worker_gets_no_new_task():
    d = Dispatcher(max_queue=2, liveness_s=6)
    _task(d, 0)
    _task(d, 1)
    assert d.queue_full()
    d.ready(b"A", 2, 0.0)
    d.drain(b"A")
    assert _assign(d) == []
    d.ready(b"A", 1, 0.1)
    assert _assign(d) == []


def test_cancel_and_a_client_going_away_remove_queued_tasks():
    d = Dispatcher(max_queue=10, liveness_s=6)
    for n in range(3):
        _task(d, n, client=b"c1")
    _task(d, 9, client=b"c2")
    assert d.cancel(Origin(FRONT, (b"c1",)), "t1").task_id == "t1"
    dropped = d.drop_origin(("front", (b"c1",)))
    assert {t.task_id for t in dropped} == {"t0", "t2"}
    d.ready(b"A", 5, 0.0)
    assert _assign(d) == [("t9", b"A")]


def test_a_busy_pool_process_lives_as_long_as_its_hosts_control_connection():
    """A pool process busy on a long task cannot heartbeat; its supervisor speaks for it."""
    d = Dispatcher(max_queue=10, liveness_s=6)
    d.ready(b"H", 0, 0.0, control=True)
    d.ready(b"H/p1", 2, 0.0, group=b"H")
    d.ready(b"lone", 1, 0.0)
    assert d.workers[b"H"].free == 0 and b"H" not in _assign_all(d, 3)  # a control connection gets no task
    d.seen(b"H", 5.0)
    assert d.expired(7.0) == [b"lone"]  # H/p1 silent, but its host is alive
    assert d.expired(11.5) == [b"H", b"H/p1", b"lone"]
    assert d.pool_processes(b"H") == [b"H/p1"] and d.pool_process(b"H", "H/p1") is d.workers[b"H/p1"]
    assert d.pool_process(b"other", "H/p1") is None and d.pool_process(b"H", "H") is None  # only its own processes


def test_a_dead_pool_process_requeues_its_tasks_blaming_only_the_one_it_ran():
    d = Dispatcher(max_queue=10, liveness_s=6)
    d.ready(b"H", 0, 0.0, control=True)
    d.ready(b"H/p1", 2, 0.0, group=b"H")
    t0, t1 = _task(d, 0), _task(d, 1)
    _assign(d)
    d.release(b"H/p1", t0.jid)  # one done before: it still counts for the host
    t2 = _task(d, 2)
    _assign(d)
    orphans = d.remove_worker(b"H/p1", blame=t1.jid)
    assert {t.task_id for t in orphans} == {"t1", "t2"}
    assert (t1.attempts, t2.attempts) == (1, 0)
    assert d.workers[b"H"].tasks_done_before == 1
    assert [t.task_id for t in d.queue] == ["t1", "t2"]


def _assign_all(d: Dispatcher, n: int) -> list[bytes]:
    for i in range(n):
        _task(d, 100 + i)
    return [w for _, w in _assign(d)]


def test_a_task_held_long_at_a_slow_worker_gets_a_copy_on_an_idle_one_once():
    """The batch's tail must not wait on one slow device: nothing queued, a worker free, a
    task held for more than STRAGGLER_FACTOR typical task times is copied; first answer wins."""
    from engine.broker.state import STRAGGLER_FACTOR

    d = Dispatcher(max_queue=10, liveness_s=60)
    d.ready(b"slow", 1, 0.0)
    d.ready(b"fast", 1, 0.0)
    t0, t1 = _task(d, 0), _task(d, 1)
    assert [w.wid for _, w in d.assignments(0.0)] == [b"slow", b"fast"]
    d.release(b"fast", t1.jid)
    d.took(b"fast", 0.1)  # the fast worker's task took 0.1 s
    assert list(d.stragglers(0.5)) == []  # nothing says the holder is slow: a task slow anywhere is not doubled
    d.took(b"slow", 2.0)  # ... until its own tasks take far longer than the others'
    assert list(d.stragglers(d.task_s * STRAGGLER_FACTOR - 0.01)) == []  # held since 0.0: not late yet
    copies = list(d.stragglers(1.0))
    assert [(t.task_id, w.wid) for t, w in copies] == [("t0", b"fast")]
    assert set(d.holding(t0)) == {b"slow", b"fast"}
    assert list(d.stragglers(2.0)) == []  # one copy at most
    d.release(b"fast", t0.jid)  # the copy answers first
    assert d.holding(t0) == [b"slow"] and t0.worker == b"slow"  # the slow one still holds it: it will be told


def test_a_worker_lost_while_its_task_has_a_copy_elsewhere_requeues_nothing():
    from engine.broker.state import STRAGGLER_FACTOR

    d = Dispatcher(max_queue=10, liveness_s=60)
    d.ready(b"slow", 1, 0.0)
    d.ready(b"fast", 1, 0.0)
    t0 = _task(d, 0)
    list(d.assignments(0.0))
    d.took(b"fast", 0.01)
    d.took(b"slow", 1.0)
    assert [w.wid for _, w in d.stragglers(1.0 + STRAGGLER_FACTOR)] == [b"fast"]
    assert d.remove_worker(b"slow") == [] and list(d.queue) == []  # the copy runs on
    assert t0.worker == b"fast" and t0.attempts == 0


def _needing(d: Dispatcher, n: int, pipeline: str) -> Task:
    from engine.pipeline_syntax import step_names

    task = _task(d, n)
    task.needs = step_names(pipeline)
    return task


def test_a_task_goes_only_to_a_worker_that_offers_every_operation_of_its_pipeline():
    d = Dispatcher(max_queue=10, liveness_s=6)
    d.ready(b"A", 2, 0.0, ops={"grayscale": {}, "resize": {}})  # least recently used: first in line
    d.ready(b"B", 2, 0.0, ops={"grayscale": {}, "resize": {}, "faces": {}})
    _needing(d, 0, "resize:width=64|faces")
    _needing(d, 1, "grayscale")
    assert _assign(d) == [("t0", b"B"), ("t1", b"A")]
    assert d.can_run(frozenset({"faces"})) is True
    assert d.can_run(frozenset({"sparkle"})) is False
    assert d.offered() == {"grayscale", "resize", "faces"}


def test_a_task_no_free_worker_can_run_keeps_its_place_and_does_not_block_the_others():
    d = Dispatcher(max_queue=10, liveness_s=6)
    d.ready(b"A", 3, 0.0, ops={"grayscale": {}})
    d.ready(b"B", 1, 0.0, ops={"grayscale": {}, "faces": {}})
    _needing(d, 0, "faces")
    _needing(d, 1, "faces")  # B's one slot is taken by t0: this one waits for it
    _needing(d, 2, "grayscale")
    assert _assign(d) == [("t0", b"B"), ("t2", b"A")]
    assert [t.task_id for t in d.queue] == ["t1"]  # still first in line
    _needing(d, 3, "grayscale")
    d.release(b"B", 1)
    assert _assign(d) == [("t1", b"B"), ("t3", b"A")]


def test_whether_a_pipeline_can_run_follows_the_workers_as_they_come_and_go():
    d = Dispatcher(max_queue=10, liveness_s=6)
    assert d.can_run(frozenset({"faces"})) is None  # nobody there yet: the task may wait
    d.ready(b"A", 1, 0.0, ops={"grayscale": {}})
    assert d.can_run(frozenset({"faces"})) is False
    d.ready(b"B", 1, 0.0, ops={"faces": {}})
    assert d.can_run(frozenset({"faces"})) is True
    assert d.can_run(frozenset({"faces", "grayscale"})) is False  # offered, but by no one worker
    _needing(d, 0, "faces")
    _needing(d, 1, "faces")
    assert _assign(d) == [("t0", b"B")]  # t1 waits for B's slot
    d.remove_worker(b"B")  # t0 comes back to the queue
    assert d.can_run(frozenset({"faces"})) is False
    assert [t.task_id for t in d.unrunnable()] == ["t0", "t1"]
    d.ready(b"W", 1, 0.0)  # a worker that does not say what it offers is taken to offer everything
    assert d.can_run(frozenset({"faces"})) is True and d.unrunnable() == []


def test_info_lists_the_operations_as_the_broker_checks_them_first_declaration_first():
    d = Dispatcher(max_queue=10, liveness_s=6)
    d.ready(b"A", 1, 0.0, ops={"resize": {"params": [{"name": "width"}]}})
    d.ready(b"B", 1, 0.0, ops={"resize": {"params": [{"name": "width"}, {"name": "height"}]}, "faces": {}})
    assert d.schema() == {"resize": {"params": [{"name": "width"}]}, "faces": {}}
    d.ready(b"C", 1, 0.0, ops={"sepia": None})  # not a declaration: the broker cannot check it, INFO omits it
    assert "sepia" not in d.schema()


def test_workers_of_two_engine_versions_get_only_the_pipelines_their_declaration_accepts():
    """A rolling upgrade: the newer workers' ``resize`` has a parameter the older ones lack."""
    import copy

    from engine import ops
    from engine.broker.pipelines import PipelineChecker
    from engine.errors import BadParameter

    old = {"resize": ops.describe()["resize"], "grayscale": ops.describe()["grayscale"]}
    new = copy.deepcopy(old)
    new["resize"]["params"].append({"name": "fancy", "type": "int", "help": "newer", "default": 0, "min": 0, "max": 9})
    d = Dispatcher(max_queue=10, liveness_s=6)
    d.ready(b"OLD", 2, 0.0, ops=old)  # least recently used: first in line
    d.ready(b"NEW", 2, 0.0, ops=new)
    checker = PipelineChecker(d)
    both = checker.check("resize:width=64")
    assert both.accepted is None and both.canonical == ops.canonical("resize:width=64")  # any worker will do
    newer = checker.check("resize:width=64,fancy=2")
    assert newer.accepted == {d.workers[b"NEW"].declaration} and "fancy=2" in newer.canonical
    assert d.differing_ops() == ["resize"]  # grayscale is declared alike
    refused = checker.check("resize:width=64,sparkle=1")  # no version has it: the oldest's error
    assert isinstance(refused, BadParameter) and "sparkle" in refused.message

    for i, checked in enumerate((newer, both, newer)):
        task = _needing(d, i, checked.canonical)
        task.accepted = checked.accepted
    assert _assign(d) == [("t0", b"NEW"), ("t1", b"OLD"), ("t2", b"NEW")]  # t0 and t2 skip OLD, first in line

    d.remove_worker(b"NEW")  # its tasks come back; only OLD is left, which cannot run them
    assert [t.task_id for t in d.unrunnable()] == ["t0", "t2"]
    assert checker.check("resize:width=64,fancy=2").code == "bad_parameter"  # checked afresh: refused now
    d.ready(b"NEW2", 1, 0.0, ops=copy.deepcopy(new))  # the same declaration again: the same id
    assert d.unrunnable() == [] and _assign(d) == [("t0", b"NEW2")]


def test_the_broker_waits_for_a_timer_due_within_a_millisecond_instead_of_polling_until_then():
    from engine.broker.core import poll_timeout_ms

    assert poll_timeout_ms(10.0004, 10.0) == 1  # int() made it 0: a zero-timeout poll
    assert poll_timeout_ms(10.5, 10.0) == 500
    assert poll_timeout_ms(9.9, 10.0) == 0  # overdue: handle it now


def test_tasks_past_their_retries_are_returned_for_failing_never_queued_again():
    """The routing state decides (requeue, or give up) instead of queueing a task that the
    broker then has to take out of the queue again (an O(queue) removal per task)."""
    d = Dispatcher(max_queue=10, liveness_s=6, max_retries=1)
    d.ready(b"A", 2, 0.0)
    t0, t1 = _task(d, 0), _task(d, 1)
    _assign(d)
    t0.attempts = 1  # it took one worker down already
    orphans = d.remove_worker(b"A")
    assert {t.task_id for t in orphans} == {"t0", "t1"}
    assert [t.task_id for t in d.queue] == ["t1"] and d.exhausted(t0) and not d.exhausted(t1)
    assert t0.worker is None and t0.jid in d.tasks  # the caller fails it
    d.ready(b"B", 1, 0.0)
    _assign(d)
    assert d.take_back(t1) is d.workers[b"B"] and d.exhausted(t1) and list(d.queue) == []
    d.drop_queued([t0])
    assert t0.jid not in d.tasks
