"""CURVE on the broker's sockets: who gets service and who does not.

A refused CURVE handshake never connects, so nothing is ever received on the socket. The
client reads libzmq's handshake events (engine/handshake.py) and fails its tasks with
Unauthorized and the reason, well before its timeout; a refused worker never appears in
the broker's ``info()``.
"""
import asyncio
import subprocess
import sys
import time

import pytest
import zmq
import zmq.auth
from faults_helpers import wait_until
from security_helpers import REFUSED_TIMEOUT_S
from zmq.utils import z85

from engine import AsyncClient
from engine import keys as keytool
from engine import protocol as P
from engine.errors import ConfigError, TaskTimeout, Unauthorized
from engine.security import RECHECK_S, PeerKeys, load_key_pair

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq built without CURVE")


def _refused(cluster, keys: PeerKeys | None, jpeg: bytes, reason: str) -> None:
    """The client is told why, by the handshake: its timeout is far longer than the test waits."""
    with cluster.client(keys=keys, timeout_s=60.0) as client:
        with pytest.raises(Unauthorized, match=reason):
            client.submit(jpeg, "grayscale").result(timeout=REFUSED_TIMEOUT_S * 5)
        with pytest.raises(Unauthorized, match=reason):  # and so is every later call, at once
            client.info()


def test_encrypted_session_processes_images_and_the_broker_knows_the_client(secure_factory, jpegs):
    cluster = secure_factory(local_workers=2).start_broker()  # local workers get their own keys
    with cluster.client("alice") as client:
        results = list(client.map(list(jpegs.values()), "grayscale|png"))
        info = client.info()
    assert [r.format for r in results] == ["png"] * len(jpegs)
    assert all(r.width > 0 for r in results)
    assert info["you"] == "alice"
    assert info["security"]["curve"] is True
    assert info["shared_memory"] is None and client.stats["by_reference"] == 0  # never offered with CURVE
    assert info["identities"]["alice"]["received"] == len(jpegs)

    async def through_asyncio():
        async with AsyncClient(cluster.front, keys=cluster.ring.peer("bob"), timeout_s=30,
                               heartbeat_interval_s=0.5) as aclient:
            return await aclient.process(jpegs["coins.jpg"], "grayscale"), await aclient.info()

    result, info = asyncio.run(through_asyncio())
    assert result.width == 384 and info["you"] == "bob"


def test_unknown_key_wrong_broker_key_and_no_key_get_no_service(secure_factory, ring, jpegs):
    cluster = secure_factory(local_workers=1).start_broker()
    photo = jpegs["coins.jpg"]
    impostor_broker = ring.root / "impostor"
    keytool.main(["new", "broker", "--dir", str(impostor_broker)])
    _refused(cluster, ring.peer("mallory"), photo, "not in the broker's allow-list for clients")
    _refused(cluster, ring.peer("alice", broker_public=impostor_broker / "broker.key"), photo,
             "most likely not the broker's")
    _refused(cluster, ring.peer("edge1"), photo, "allow-list for clients")  # a worker key cannot submit tasks
    _refused(cluster, None, photo, "requires CURVE")  # a client without keys
    with zmq.Context() as ctx:  # a plaintext client cannot even start the handshake
        raw = ctx.socket(zmq.DEALER)
        raw.linger = 0
        raw.connect(cluster.front)
        raw.send_multipart(P.encode(P.Heartbeat()), zmq.NOBLOCK)
        assert raw.poll(int(REFUSED_TIMEOUT_S * 1000)) == 0
        raw.close()
    info = cluster.info()
    assert info["identities"] == {} and info["received"] == 0  # none of the refused got a message in
    with cluster.client("alice") as client:  # the refusals were about the keys
        assert client.process(photo, "grayscale").width > 0


def test_a_refused_client_is_told_why_and_served_once_its_key_is_allowed(secure_factory, ring, jpegs):
    cluster = secure_factory(local_workers=1).start_broker()
    photo = jpegs["coins.jpg"]

    async def refused_then_allowed():
        async with AsyncClient(cluster.front, keys=ring.peer("mallory"), timeout_s=60,
                               heartbeat_interval_s=0.5) as aclient:
            with pytest.raises(Unauthorized, match="allow-list for clients"):
                await asyncio.wait_for(aclient.process(photo, "grayscale"), REFUSED_TIMEOUT_S * 5)
            with pytest.raises(Unauthorized):  # at once, while the refusal stands
                aclient.submit(photo, "grayscale").result()
            assert keytool.main(["allow", "--clients", str(ring.root / "mallory.key"),
                                 "--keys-dir", str(ring.dir)]) == 0
            deadline_s = time.monotonic() + 30  # the client tries again once per liveness interval
            while True:
                try:
                    return await aclient.process(photo, "grayscale")
                except Unauthorized:
                    assert time.monotonic() < deadline_s, "the allowed key was never served"
                    await asyncio.sleep(0.2)

    assert asyncio.run(refused_then_allowed()).width == 384


def test_a_client_key_cannot_register_as_a_worker(secure_factory, ring, jpegs):
    cluster = secure_factory(local_workers=0).start_broker(wait_slots=0)
    impostor = ring.root / "impostor"
    assert keytool.main(["new", "broker", "--dir", str(impostor)]) == 0
    as_client = cluster.add_worker(1, *ring.worker_flags("alice"))
    unknown = cluster.add_worker(1, *ring.worker_flags("mallory"))
    wrong_broker = cluster.add_worker(1, "--key", str(ring.root / "edge1.key_secret"),
                                      "--broker-key", str(impostor / "broker.key"))
    refusals = ((as_client, "not in the broker's allow-list for workers"),
                (unknown, "not in the broker's allow-list for workers"),
                (wrong_broker, "most likely not the broker's"))
    for refused, why in refusals:  # each starts its pool process first: on a loaded machine that takes a while
        wait_until(lambda: why in refused.stderr_text(), 60, f"the worker to say {why!r}")
    time.sleep(3 * 0.5 + 1.0)  # several worker heartbeats and reconnects (libzmq retries every 0.1 s)
    assert cluster.info()["workers"] == []
    for refused, why in refusals:  # each says why, once, and keeps trying
        log = refused.stderr_text()
        assert refused.alive() and log.count(why) == 1, log[-2000:]
    with cluster.client("alice", timeout_s=REFUSED_TIMEOUT_S) as client, pytest.raises(TaskTimeout):
        client.process(jpegs["coins.jpg"], "grayscale")
    cluster.add_worker(1, *ring.worker_flags("edge1"))
    info = cluster.wait_ready(2)
    assert len(info["workers"]) == 1
    with cluster.client("alice") as client:
        assert client.process(jpegs["coins.jpg"], "grayscale").width > 0


def test_a_revoked_client_loses_service_at_its_next_task(secure_factory, ring, jpegs):
    cluster = secure_factory(local_workers=1).start_broker()
    photo = jpegs["coins.jpg"]
    with cluster.client("bob") as client:
        assert client.process(photo, "grayscale").width > 0
        assert keytool.main(["revoke", "--clients", "bob", "--keys-dir", str(ring.dir)]) == 0
        time.sleep(RECHECK_S + 0.2)
        with pytest.raises(Unauthorized, match="revoked"):
            client.process(photo, "grayscale")
    _refused(cluster, ring.peer("bob"), photo, "allow-list")  # and a new connection is refused outright
    with cluster.client("alice") as client:
        assert client.process(photo, "grayscale").width > 0


def test_secure_broker_without_keys_refuses_to_start_and_says_how_to_make_them():
    done = subprocess.run([sys.executable, "-m", "engine.broker", "--secure", "--front", "tcp://127.0.0.1:0",
                           "--back", "tcp://127.0.0.1:0"], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2
    assert "python -m engine.keys init" in done.stderr and "--keys-dir" in done.stderr


def test_key_tool_writes_private_secrets_and_allows_only_public_keys(ring):
    secret = ring.root / "alice.key_secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert (ring.dir / "broker.key_secret").stat().st_mode & 0o777 == 0o600
    public, private = load_key_pair(secret)
    # allow given a secret file copies only its public key
    assert keytool.main(["allow", "--workers", str(ring.root / "bob.key_secret"), "--keys-dir", str(ring.dir)]) == 0
    listed = (ring.dir / "workers" / "bob.key").read_bytes()
    assert load_key_pair(ring.root / "bob.key_secret")[1] not in listed
    assert private not in (ring.dir / "clients" / "alice.key").read_bytes()
    assert public in (ring.dir / "clients" / "alice.key").read_bytes()
    assert keytool.main(["new", "alice", "--dir", str(ring.root)]) == 2  # never overwritten silently
    secret.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_key_pair(secret)
    with pytest.raises(ConfigError, match="broker's public key"):
        PeerKeys.from_files(str(secret), None, key_env="ENGINE_CLIENT_KEY")


def test_a_refused_key_is_logged_once_a_minute_not_at_every_retry(ring, caplog):
    from engine.security import AllowList

    allowed = AllowList("clients", ring.dir / "clients")
    stranger, _ = zmq.auth.load_certificate(ring.root / "mallory.key")
    with caplog.at_level("WARNING", logger="engine.security"):
        assert [allowed.callback("clients", stranger) for _ in range(5)] == [False] * 5
    assert [r.getMessage().count("refused a clients connection") for r in caplog.records] == [1]
    assert allowed.name_of(stranger) is None


def test_the_zap_handler_admits_only_listed_curve_keys_of_the_socket_s_role(ring, caplog):
    """The broker's own ZAP handler (RFC 27), one request at a time, without sockets."""
    from engine.security import ROLES, AllowList, ZapHandler

    zap = ZapHandler(zmq.Context.instance(), {role: AllowList(role, ring.dir / role) for role in ROLES})
    alice, _ = load_key_pair(ring.root / "alice.key_secret")
    mallory, _ = zmq.auth.load_certificate(ring.root / "mallory.key")

    def ask(domain: bytes, key: bytes, *, mechanism: bytes = b"CURVE", version: bytes = b"1.0") -> list[bytes]:
        return zap._answer_safely([version, b"7", domain, b"127.0.0.1", b"", mechanism, z85.decode(key)])

    assert ask(b"clients", alice) == [b"1.0", b"7", b"200", b"OK", alice, b""]  # the User-Id: its z85 key
    for refused in (ask(b"clients", mallory), ask(b"workers", alice), ask(b"", alice),
                    ask(b"clients", alice, version=b"2.0"), ask(b"clients", alice, mechanism=b"PLAIN"),
                    zap._answer_safely([b"1.0", b"7", b"clients"]),
                    zap._answer_safely([b"1.0", b"7", b"clients", b"", b"", b"CURVE", b"short"])):
        assert refused[2] == b"400" and refused[4] == b"", refused
    assert ask(b"", b"", mechanism=b"NULL")[2] == b"200"  # a plaintext socket of the context, as pyzmq's handler
    zap._lists[b"clients"].callback = lambda *_: 1 / 0  # a bug refuses the peer, and the loop goes on
    with caplog.at_level("WARNING", logger="engine.security"):
        assert ask(b"clients", alice)[2] == b"500"
    assert "a ZAP request could not be answered" in caplog.text and "ZeroDivisionError" in caplog.text
