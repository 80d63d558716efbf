"""Credit sized to the link (engine.worker.credit), without sockets."""
from engine.worker.credit import SAMPLES, Credit


def starve(credit: Credit, wait_s: float, task_s: float, rounds: int = SAMPLES, more: bool = True) -> int:
    """``rounds`` cycles of: a task runs, the process answers and waits ``wait_s`` for the next."""
    now_s, added = 0.0, 0
    credit.arrived(now_s, more)  # the first task (nothing waited for yet)
    for _ in range(rounds):
        credit.ran(task_s)
        now_s += task_s
        credit.idle(now_s)
        now_s += wait_s
        added += credit.arrived(now_s, more)
    return added


def test_a_process_that_waits_a_round_trip_asks_for_that_many_more_tasks():
    credit = Credit(base=2, max_credit=16)
    assert starve(credit, wait_s=0.060, task_s=0.020) == 3  # 60 ms of waiting = 3 tasks of 20 ms
    assert credit.current == 5


def test_growth_is_bounded():
    credit = Credit(base=2, max_credit=6)
    assert starve(credit, wait_s=1.0, task_s=0.010, rounds=5 * SAMPLES) == 4 and credit.current == 6


def test_a_short_wait_or_an_empty_broker_queue_is_not_a_slow_link():
    lan = Credit(base=2, max_credit=16)
    assert starve(lan, wait_s=0.0003, task_s=0.001) == 0  # under half a task: not worth holding one more
    empty = Credit(base=2, max_credit=16)
    assert starve(empty, wait_s=5.0, task_s=0.010, more=False) == 0  # it waited because there was no work


def test_one_spike_is_not_a_round_trip_and_a_new_registration_starts_over():
    credit = Credit(base=2, max_credit=16)
    assert starve(credit, wait_s=0.5, task_s=0.1, rounds=SAMPLES - 1) == 0  # not enough samples yet
    credit.reset()
    assert credit.current == 2
    spiky = Credit(base=2, max_credit=16)
    waits = [0.02, 0.9, 0.02, 0.0]
    now_s = 0.0
    spiky.arrived(now_s, True)
    got = 0
    for wait_s in waits:
        spiky.ran(0.02)
        now_s += 0.02
        spiky.idle(now_s)
        now_s += wait_s
        got += spiky.arrived(now_s, True)
    assert got == 1  # the median of the waits (20 ms = 1 task), neither the 0.9 s spike nor the burst
