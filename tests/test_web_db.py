"""The history database: migrations keep old data, versions are checked, queries are per user."""
import sqlite3
import time

import pytest

from engine.web.blobs import BlobStore
from engine.web.db import SCHEMA_VERSION, NameTaken, Store

pytestmark = pytest.mark.timeout(30)


def test_upgrade_from_version_1_keeps_history(tmp_path):
    path = tmp_path / "web.sqlite3"
    old = Store(path, target_version=1)
    uid = old.create_user("alice", "hash")
    old.add_batch("b" * 16, uid, "grayscale")
    old.add_job("j" * 16, uid, batch_id="b" * 16, pipeline="grayscale", input_name="a.jpg",
                input_sha="0" * 64, input_bytes=10)
    old.close()
    assert "thumb_sha" not in {r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(jobs)")}

    new = Store(path)
    assert new.version == SCHEMA_VERSION >= 2
    job = new.job(uid, "j" * 16)
    assert job["input_name"] == "a.jpg" and job["thumb_sha"] is None
    new.finish_job("j" * 16, output_sha="1" * 64, output_bytes=5, thumb_sha="2" * 64, meta={"width": 3})
    assert new.job(uid, "j" * 16)["meta"] == {"width": 3}


def test_a_newer_database_is_refused(tmp_path):
    path = tmp_path / "web.sqlite3"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="upgrade the engine"):
        Store(path)


def test_names_are_unique_whatever_the_case(tmp_path):
    store = Store(tmp_path / "db")
    store.create_user("Alice", "h")
    with pytest.raises(NameTaken):
        store.create_user("alice", "h")


def test_queries_are_scoped_to_their_user(tmp_path):
    store = Store(tmp_path / "db")
    a, b = store.create_user("a1a", "h"), store.create_user("b2b", "h")
    store.add_job("x" * 16, a, batch_id=None, pipeline="p", input_name="n", input_sha="0" * 64, input_bytes=7)
    assert store.job(b, "x" * 16) is None and store.delete_job(b, "x" * 16) is None
    assert store.jobs(b) == [] and store.usage_bytes(b) == 0 and store.usage_bytes(a) == 7
    assert store.delete_job(a, "x" * 16)["id"] == "x" * 16


def test_expired_sessions_do_not_log_in(tmp_path):
    store = Store(tmp_path / "db")
    uid = store.create_user("sam", "h")
    store.add_session(uid, "live", 60)
    store.add_session(uid, "dead", -1)
    assert store.session_user("live")["name"] == "sam"
    assert store.session_user("dead") is None


def test_retention_selects_old_and_surplus_jobs(tmp_path):
    store = Store(tmp_path / "db")
    uid = store.create_user("ret", "h")
    for i in range(4):
        store.add_job(f"{i:016x}", uid, batch_id=None, pipeline="p", input_name="n", input_sha="0" * 64,
                      input_bytes=1)
        store.fail_job(f"{i:016x}", "x", "y")
        time.sleep(0.01)
    assert sorted(j for _, j in store.expired_jobs(older_than=0, keep_per_user=2)) == [f"{0:016x}", f"{1:016x}"]
    assert len(store.expired_jobs(older_than=time.time() + 1, keep_per_user=100)) == 4


def test_blob_store_is_content_addressed(tmp_path):
    blobs = BlobStore(tmp_path)
    sha = blobs.put(b"hello")
    assert sha == blobs.put(b"hello") and blobs.get(sha) == b"hello"
    assert blobs.path(sha).parent.name == sha[:2]
    with pytest.raises(ValueError):
        blobs.path("../../etc/passwd")
    blobs.remove(sha)
    assert not blobs.path(sha).exists()


def test_command_line_serves_pages_and_stops_cleanly(tmp_path):
    import subprocess
    import sys

    import httpx
    from web_helpers import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "engine.web", "--listen", f"127.0.0.1:{port}",
                             "--broker", f"tcp://127.0.0.1:{free_port()}", "--data-dir", str(tmp_path),
                             "--log-level", "warning"], stderr=subprocess.PIPE)
    try:
        deadline_s = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/login", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline_s and proc.poll() is None, proc.stderr.read().decode()
                time.sleep(0.1)
        assert r.status_code == 200 and "Log in" in r.text
        assert r.headers["x-frame-options"] == "DENY" and "default-src 'self'" in r.headers["content-security-policy"]
    finally:
        proc.terminate()
        assert proc.wait(15) in (0, -15)  # uvicorn re-raises SIGTERM after its clean shutdown
    assert (tmp_path / "web.sqlite3").exists()
    help_text = subprocess.run([sys.executable, "-m", "engine.web", "--help"], capture_output=True, text=True).stdout
    assert "ENGINE_WEB_BROKER" in help_text and "--quota-mb" in help_text
