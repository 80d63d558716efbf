"""The supervisor's socket-free core (engine.worker.table) and the shared status board, without sockets."""
import multiprocessing

from engine.metrics.names import BUCKETS_S, WORKER_OUTCOMES
from engine.worker.board import NOTHING, StatusBoard
from engine.worker.table import WATCH_INTERVAL_S, Answer, Kill, Proc, ProcessTable

CODE = "deadline_exceeded"


class FakeHandle:
    pid = 4242


def table_with_one(timeout_s=60.0):
    board = StatusBoard(multiprocessing.get_context("spawn"))
    proc = Proc(ident="host-1-abc/p1", handle=FakeHandle(), board=board)
    table = ProcessTable(task_timeout_s=timeout_s, grace_s=1.0)
    table.add(proc)
    return table, proc, board


def test_the_status_board_reports_what_runs_and_counts_what_finished():
    _table, _proc, board = table_with_one()
    assert board.read().task_id == "" and board.tally() == NOTHING
    board.hold(3)
    board.start("7@b", started_s=10.0, due_s=None)
    run = board.read()
    assert (run.task_id, run.started_s, run.due_s, run.held) == ("7@b", 10.0, None, 3)
    board.finish("result_too_large", 0.02, held=2)
    board.ended("cancelled")  # one that never ran: counted, no seconds
    run, tally = board.read(), board.tally()
    assert run.task_id == "" and run.held == 2
    assert dict(zip(WORKER_OUTCOMES, tally.outcomes, strict=True)) == {**dict.fromkeys(WORKER_OUTCOMES, 0),
                                                         "result_too_large": 1, "cancelled": 1}
    assert sum(tally.buckets) == 1 and tally.buckets[BUCKETS_S.index(0.025)] == 1 and tally.seconds == 0.02
    board.start("8@b", started_s=11.0, due_s=None)
    board.finish("done", 120.0, held=0)  # past the last bucket: +Inf
    new = board.tally().minus(tally)  # what the supervisor adds at its next look
    assert new.outcomes[WORKER_OUTCOMES.index("done")] == 1 and sum(new.outcomes) == 1
    assert new.buckets[-1] == 1 and sum(new.buckets) == 1 and new.seconds == 120.0
    board.start("x" * 600, started_s=1.0, due_s=2.5)  # longer than any legal id: cut, never overflowing
    assert board.read().due_s == 2.5 and len(board.read().task_id) == 512


def test_an_idle_table_wants_nothing_and_sleeps_until_told():
    table, _proc, _board = table_with_one()
    assert table.watch(100.0, CODE) == [] and table.next_wake_s(100.0) == float("inf")


def test_a_running_task_past_its_deadline_is_answered_then_killed_after_the_grace():
    table, proc, board = table_with_one()
    board.start("7@b", started_s=10.0, due_s=10.5)
    assert table.watch(10.4, CODE) == []
    assert table.next_wake_s(10.4) == 10.5
    actions = table.watch(10.5, CODE)
    assert [type(a) for a in actions] == [Answer]
    assert actions[0].task_id == "7@b" and actions[0].code == CODE and "while running" in actions[0].message
    assert table.watch(11.0, CODE) == []  # answered once only
    assert table.next_wake_s(11.0) == 11.5
    kill = table.watch(11.5, CODE)
    assert [type(a) for a in kill] == [Kill] and "after its task's deadline and was killed" in kill[0].reason
    how, blame = table.death(proc, -9)
    assert "deadline" in how and blame == ""  # answered already: the broker must not retry it


def test_a_process_that_comes_back_within_the_grace_is_kept():
    table, _proc, board = table_with_one()
    board.start("7@b", started_s=10.0, due_s=10.5)
    table.watch(10.6, CODE)
    board.finish("done", 0.1, held=0)
    board.start("8@b", started_s=10.9, due_s=None)  # its next task
    assert table.watch(11.6, CODE) == []


def test_the_task_timeout_answers_and_kills_at_once():
    table, proc, board = table_with_one(timeout_s=1.5)
    board.start("9@b", started_s=0.0, due_s=None)
    assert table.next_wake_s(0.2) == min(1.5, 0.2 + WATCH_INTERVAL_S)
    actions = table.watch(1.5, CODE)
    assert [type(a) for a in actions] == [Answer, Kill]
    assert "task timeout of 1.5 s" in actions[0].message and actions[0].meta == {"task_timeout_s": 1.5}
    assert table.watch(5.0, CODE) == []  # being killed: nothing more
    assert table.death(proc, -9)[1] == ""


def test_a_cancelled_running_task_is_killed_after_the_grace_without_an_answer():
    table, proc, board = table_with_one()
    board.start("5@b", started_s=0.0, due_s=None)
    assert table.cancel("nope@b", 0.1) is None
    assert table.cancel("5@b", 0.1) is proc
    assert table.watch(0.5, CODE) == []
    kill = table.watch(1.1, CODE)
    assert [type(a) for a in kill] == [Kill] and "after its task was cancelled" in kill[0].reason


def test_a_crash_blames_the_running_task_only():
    table, proc, board = table_with_one()
    board.start("3@b", started_s=0.0, due_s=None)
    how, blame = table.death(proc, -9)
    assert how == "was killed by signal 9" and blame == "3@b"
    board.finish("done", 0.1, held=0)
    assert table.death(proc, 1) == ("exited with code 1", "")
