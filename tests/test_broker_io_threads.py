"""The broker's libzmq I/O threads: a flag, a default from the core count, a clean exit."""
from pathlib import Path

from cluster_helpers import FAST_HEARTBEAT_S, Proc, free_port
from faults_helpers import wait_until

from engine.broker.config import IO_THREADS_MAX, default_io_threads


def io_threads(pid: int) -> int:
    names = []
    for comm in Path(f"/proc/{pid}/task").glob("*/comm"):
        try:
            names.append(comm.read_text().strip())
        except OSError:
            pass  # a thread that ended meanwhile
    return sum(1 for name in names if name.startswith("ZMQbg/IO/"))


def test_the_default_is_one_io_thread_per_four_cores_within_bounds():
    assert [default_io_threads(cores) for cores in (1, 2, 4, 8, 16, 64)] == [1, 1, 1, 2, 4, IO_THREADS_MAX]


def test_io_threads_flag_sets_the_brokers_libzmq_threads_and_it_still_stops_cleanly():
    for asked, expected in (("2", 2), ("0", default_io_threads())):
        broker = Proc(["-m", "engine.broker", "--front", f"tcp://127.0.0.1:{free_port()}",
                       "--back", f"tcp://127.0.0.1:{free_port()}", "--io-threads", asked,
                       "--heartbeat-interval-s", str(FAST_HEARTBEAT_S)])
        try:
            wait_until(lambda: "clients on" in broker.stderr_text() or not broker.alive(), 30, "the broker to start")
            assert broker.alive(), broker.stderr_text()
            assert io_threads(broker.pid) == expected
        finally:
            code = broker.stop(timeout_s=15)
        assert code == 0, broker.stderr_text()  # the broker's own context is terminated without hanging
