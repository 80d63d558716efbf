"""Secure by default: loopback unless told otherwise, a warning when opened without CURVE,
and local processes get only the key their role needs."""
import socket
import time

import psutil
import pytest
from cluster_helpers import FAST_HEARTBEAT_S, Proc, free_port
from faults_helpers import wait_until
from security_helpers import KeyRing

from engine.broker.config import BACK, FRONT
from engine.security import ENV_CLIENT_KEY, ENV_WORKER_KEY


def _listening(pid: int) -> set[tuple[str, int]]:
    return {(c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).net_connections("tcp")
            if c.status == psutil.CONN_LISTEN}


def _taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_bare_broker_listens_on_loopback_only():
    assert FRONT.startswith("tcp://127.0.0.1:") and BACK.startswith("tcp://127.0.0.1:")
    taken = [port for port in (5555, 5556) if _taken(port)]
    if taken:  # make run (or another broker) beside the suite: this one case needs the default ports
        pytest.skip(f"the default ports {taken} are in use (a broker from make run?): the bare-defaults case "
                    f"needs them free")
    broker = Proc(["-m", "engine.broker", "--heartbeat-interval-s", str(FAST_HEARTBEAT_S)])
    try:
        wait_until(lambda: len(_listening(broker.pid)) >= 2 or not broker.alive(), 30, "the broker to listen")
        assert _listening(broker.pid) == {("127.0.0.1", 5555), ("127.0.0.1", 5556)}, broker.stderr_text()
        assert "without CURVE" not in broker.stderr_text()
    finally:
        broker.stop()


def test_public_without_curve_listens_everywhere_and_warns():
    front, back = free_port(), free_port()
    broker = Proc(["-m", "engine.broker", "--public", "--front", f"tcp://*:{front}", "--back", f"tcp://*:{back}"])
    try:
        wait_until(lambda: len(_listening(broker.pid)) >= 2 or not broker.alive(), 30, "the broker to listen")
        assert _listening(broker.pid) == {("0.0.0.0", front), ("0.0.0.0", back)}
        wait_until(lambda: "without CURVE" in broker.stderr_text(), 10, "the warning")
        log = broker.stderr_text()
        assert "may send tasks" in log and "pose as a worker" in log and "--keys-dir" in log
    finally:
        broker.stop()


def test_local_processes_get_only_the_key_of_their_role(tmp_path):
    ring = KeyRing(tmp_path)
    web = f"127.0.0.1:{free_port()}"
    broker = Proc(["-m", "engine.broker", "--keys-dir", str(ring.dir), "--front", f"tcp://127.0.0.1:{free_port()}",
                   "--back", f"tcp://127.0.0.1:{free_port()}", "--local-workers", "1", "--web", web,
                   "--heartbeat-interval-s", str(FAST_HEARTBEAT_S)],
                  env={ENV_WORKER_KEY: "/nonexistent/outside.key_secret"})  # one set outside must not leak either
    try:
        def children() -> dict[str, dict]:
            found = {}
            for child in psutil.Process(broker.pid).children():
                cmd = " ".join(child.cmdline())
                role = "web" if "engine.web" in cmd else "worker" if "engine.worker" in cmd else None
                if role:
                    found[role] = child.environ()
            return found

        wait_until(lambda: len(children()) == 2, 60, "the web gateway and the workers to start")
        envs = children()
        assert ENV_CLIENT_KEY in envs["web"] and ENV_WORKER_KEY not in envs["web"]
        assert ENV_WORKER_KEY in envs["worker"] and ENV_CLIENT_KEY not in envs["worker"]
        assert envs["worker"][ENV_WORKER_KEY] != "/nonexistent/outside.key_secret"
        time.sleep(0.1)
        assert broker.alive()
    finally:
        broker.stop()
