"""Majordomo's service routing: a task goes only to a worker that offers every operation of
its pipeline; one no connected worker offers is refused at once, with the reason."""
import time

import pytest
from cluster_helpers import FAST_HEARTBEAT_S, Proc
from faults_helpers import pool_pids, tiny_jpeg, wait_until

from engine.errors import UnknownOperation

LEARNED = {"faces", "anonymize", "background"}


def _worker_without_litert(cluster, fake_dir, *, crash: bool = False) -> Proc:
    """A worker host where the learned models cannot load (as on a board with no LiteRT
    build): ``ai_edge_litert`` fails to import in its pool processes, or (``crash``) kills
    the process as a segfaulting native library would."""
    package = fake_dir / "ai_edge_litert"
    package.mkdir(parents=True)
    body = ('import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n' if crash else
            'raise ImportError("no LiteRT build for this machine (simulated)")\n')
    (package / "__init__.py").write_text(body)
    worker = Proc(["-m", "engine.worker", "--connect", cluster.back, "--processes", "1",
                   "--heartbeat-interval-s", str(FAST_HEARTBEAT_S), "--log-level", "info"],
                  env={"PYTHONPATH": str(fake_dir)})
    cluster.workers.append(worker)
    return worker


def test_learned_operations_go_only_to_workers_that_loaded_their_models(cluster_factory, tmp_path):
    cluster = cluster_factory(local_workers=0)
    cluster.start_broker(wait_slots=0)
    plain = _worker_without_litert(cluster, tmp_path / "fake")
    cluster.wait_ready(2)
    wait_until(lambda: "does not offer the operations that need them" in plain.stderr_text(), 30, "the log line")
    image = tiny_jpeg(64, 48)
    with cluster.client(timeout_s=30) as client:
        assert not LEARNED & set(client.info()["ops"])
        started_s = time.monotonic()
        with pytest.raises(UnknownOperation) as refused:
            client.process(image, "faces|json")
        assert time.monotonic() - started_s < 10  # refused at once, not after the client's timeout
        assert "no connected worker offers" in str(refused.value) and "'faces'" in str(refused.value)
        with pytest.raises(UnknownOperation) as typo:
            client.process(image, "greyscale")
        assert "did you mean 'grayscale'?" in str(typo.value)
        assert client.process(image, "grayscale").width == 64

        full = cluster.add_worker(1)
        cluster.wait_ready(4)
        assert set(client.info()["ops"]) >= LEARNED
        answers = [client.submit(image, "faces|json") for _ in range(6)]
        plain_jobs = [client.submit(image, "grayscale") for _ in range(6)]
        assert all(f.result(60).meta.get("faces") is not None for f in answers)
        assert all(f.result(60).width == 64 for f in plain_jobs)
        processes = {int(f.result().meta["worker"].rsplit(":", 1)[1]) for f in answers}
        assert processes <= set(pool_pids(full.pid))  # only the host that loaded its models ran them


def test_a_host_whose_processes_die_loading_the_models_serves_the_rest_without_them(cluster_factory, tmp_path):
    cluster = cluster_factory(local_workers=0)
    cluster.start_broker(wait_slots=0)
    worker = _worker_without_litert(cluster, tmp_path / "fake", crash=True)
    cluster.wait_ready(2, timeout_s=90)  # the third process, started without the models, registers
    log = worker.stderr_text()
    assert "died while loading the learned models" in log and "--no-learned" in log, log[-2000:]
    image = tiny_jpeg(64, 48)
    with cluster.client(timeout_s=30) as client:
        assert not LEARNED & set(client.info()["ops"])
        assert client.process(image, "grayscale").width == 64
        with pytest.raises(UnknownOperation, match="no connected worker offers"):
            client.process(image, "anonymize")


def test_no_learned_leaves_the_models_out(cluster_factory):
    cluster = cluster_factory(local_workers=0)
    cluster.start_broker(wait_slots=0)
    cluster.add_worker(1, "--no-learned")
    info = cluster.wait_ready(2)
    assert not LEARNED & set(info["ops"]) and "grayscale" in info["ops"]


def test_the_broker_and_the_client_check_pipelines_without_numpy_or_opencv():
    import subprocess
    import sys

    code = ("import sys, engine.broker.__main__, engine.client\n"
            "from engine.pipeline_syntax import check_syntax\n"
            "check_syntax('resize:width=64|grayscale')\n"
            "print(sorted(m for m in ('cv2', 'numpy', 'simplejpeg') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _newer_declaration() -> dict:
    """The operations as a newer engine would declare them: ``resize`` has a ``fancy`` parameter."""
    import copy

    from engine import ops

    declared = copy.deepcopy(ops.describe())
    declared["resize"]["params"].append({"name": "fancy", "type": "int", "help": "a newer engine's parameter",
                                         "default": 0, "min": 0, "max": 9})
    return declared


def test_in_a_rolling_upgrade_a_newer_parameter_goes_only_to_the_newer_worker(cluster_factory, zctx):
    import zmq
    from cluster_helpers import recv_within

    from engine import protocol as P
    from engine.errors import BadParameter

    cluster = cluster_factory(local_workers=1).start_broker()
    newer = zctx.socket(zmq.DEALER)  # a worker of a newer engine version, played by the test
    newer.connect(cluster.back)
    newer.send_multipart(P.encode(P.Ready(capacity=1, ops=_newer_declaration(), host="newer", pid=1, processes=1)))
    wait_until(lambda: cluster.info()["workers_total"] == 2, 10, "the newer worker")
    assert cluster.info()["ops_differ"] == ["resize"]
    image = tiny_jpeg(64, 48)
    with cluster.client(timeout_s=30) as client:
        fancy = client.submit(image, "resize:width=8,fancy=2")
        while True:  # the broker's heartbeats come first; then the task, to this worker only
            msg, _payloads = P.decode(recv_within(newer, 10))
            if isinstance(msg, P.Request):
                break
        assert "fancy=2" in msg.pipeline
        for _ in range(3):  # the older worker still runs what it can (the newer one is busy)
            assert client.process(image, "resize:width=8").width == 8
        newer.send_multipart(P.encode(P.Reply(task_id=msg.task_id, meta={"worker": "newer"}), b"from the newer"))
        assert fancy.result(10).data == b"from the newer"
        with pytest.raises(BadParameter, match="sparkle"):  # neither version has it: refused at admission
            client.process(image, "resize:width=8,sparkle=1")
        newer.send_multipart(P.encode(P.Disconnect(reason="upgraded away")))
        wait_until(lambda: cluster.info()["workers_total"] == 1, 10, "the newer worker gone")
        with pytest.raises(BadParameter, match="fancy"):  # no worker left that knows it
            client.process(image, "resize:width=8,fancy=2")
