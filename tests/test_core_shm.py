"""Same-host payloads (engine/shm.py) with no socket: names, modes, proofs, who frees what."""
import os
import stat
import subprocess
import sys

import pytest

from engine import shm

pytestmark = pytest.mark.skipif(not shm.available(), reason="no /dev/shm here (or ENGINE_NO_SHM is set)")


def _mine(segments: shm.Segments) -> list[str]:
    return sorted(n for n in os.listdir(shm.SHM_DIR) if n.startswith(segments.prefix))


def test_an_input_and_its_result_are_files_only_this_user_can_read_and_both_go_when_the_client_closes():
    segs = shm.Segments()
    name = segs.put(b"\x89PNG image bytes")
    mode = os.stat(os.path.join(shm.SHM_DIR, name)).st_mode
    assert stat.S_IMODE(mode) == 0o600 and stat.S_ISREG(mode)
    assert shm.read_input(name, 1024) == b"\x89PNG image bytes"
    result = shm.write_result(name, memoryview(b"result bytes"))
    assert result == f"{name}-r{os.getpid()}"
    assert stat.S_IMODE(os.stat(os.path.join(shm.SHM_DIR, result)).st_mode) == 0o600
    assert segs.take_result(name, result, 1024) == b"result bytes"
    assert result not in _mine(segs) and len(_mine(segs)) == 2  # read once; its file kept for a later input
    segs.release(name)
    assert segs.live == 0 and len(_mine(segs)) == 2  # both kept for reuse, no longer any task's
    again = segs.put(b"a shorter one")
    assert again in _mine(segs) and len(_mine(segs)) == 2  # written over a kept file, not a new one
    assert shm.read_input(again, 1024) == b"a shorter one"  # (and cut to its size)
    segs.release(again)
    segs.close()
    assert _mine(segs) == []


def test_the_files_kept_for_reuse_are_bounded_in_count_and_bytes(monkeypatch):
    monkeypatch.setattr(shm, "POOL_BYTES", 10_000)
    segs = shm.Segments()
    names = [segs.put(b"x" * 4000) for _ in range(5)]
    for name in names:
        segs.release(name)
    assert len(_mine(segs)) == 2  # 8,000 bytes kept; the rest unlinked
    segs.close()
    assert _mine(segs) == []


@pytest.mark.parametrize("name", ["../etc/passwd", "engine-1-0123456789abcdef-1/../../x",
                                  "engine-key-1-0123456789abcdef", "engine-1-0123456789abcdef-1-r5", "engine-1-XYZ-1",
                                  "", "a" * 300])
def test_a_worker_opens_nothing_but_an_input_name(name):
    with pytest.raises(shm.ShmError):
        shm.read_input(name, 1 << 20)


def test_a_result_name_that_is_not_this_task_s_is_refused_and_nothing_is_unlinked():
    segs = shm.Segments()
    a, b = segs.put(b"a"), segs.put(b"b")
    other = shm.write_result(b, b"b's result")
    with pytest.raises(shm.ShmError):
        segs.take_result(a, other, 1024)
    assert shm.read_result(other, 1024) == b"b's result"  # still there for its own task
    segs.close()
    assert _mine(segs) == []


def test_a_symlink_a_too_large_segment_and_a_missing_one_are_refused(tmp_path):
    segs = shm.Segments()
    big = segs.put(b"x" * 5000)
    with pytest.raises(shm.ShmError, match="limit"):
        shm.read_input(big, 4096)
    link = f"{segs.prefix}999"
    os.symlink(tmp_path / "elsewhere", os.path.join(shm.SHM_DIR, link))
    try:
        with pytest.raises(shm.ShmError):
            shm.read_input(link, 4096)
    finally:
        os.unlink(os.path.join(shm.SHM_DIR, link))
    with pytest.raises(shm.ShmError):
        shm.read_input(f"{segs.prefix}12345", 4096)
    segs.close()


def test_a_proof_holds_only_for_the_route_it_was_made_for():
    key = shm.BrokerKey()
    try:
        proof = shm.prove(key.name, b"client-a")
        assert proof is not None and key.verify(proof, b"client-a")
        assert not key.verify(proof, b"client-b") and not key.verify(None, b"client-a")
        assert shm.prove("engine-key-1-0123456789abcdef", b"client-a") is None  # no such key: not this host
        assert shm.prove("../../etc/shadow", b"client-a") is None
    finally:
        key.close()
    assert shm.prove(key.name, b"client-a") is None  # gone with its broker


def test_a_key_of_another_pid_namespace_proves_nothing():
    key = shm.BrokerKey()
    try:
        path = os.path.join(shm.SHM_DIR, key.name)
        with open(path, "r+b") as f:
            secret = f.read(shm.KEY_BYTES)
            f.seek(0)
            f.truncate()
            f.write(secret + b"pid:[1]")  # as if the broker ran in another container
        assert shm.prove(key.name, b"client-a") is None
    finally:
        key.close()


def test_a_client_s_sweep_removes_results_of_ended_tasks_only():
    segs = shm.Segments()
    live, ended = segs.put(b"live"), segs.put(b"ended")
    late = shm.write_result(ended, b"a straggler's second answer")
    mid = shm.write_result(live, b"being written")
    segs.release(ended)
    assert segs.sweep([live]) == 1
    assert _mine(segs) == sorted([live, mid, ended])  # the ended input is kept for reuse, its late result not
    segs.close()
    assert _mine(segs) == []
    assert late not in os.listdir(shm.SHM_DIR)


def test_segments_of_a_process_that_died_are_swept_and_a_live_one_s_are_kept():
    code = ("from engine import shm; s = shm.Segments(); n = s.put(b'x' * 100); shm.write_result(n, b'y'); "
            "print(s.prefix)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    dead_prefix = out.stdout.strip()
    mine = shm.Segments()
    kept = mine.put(b"mine")
    try:
        assert len([n for n in os.listdir(shm.SHM_DIR) if n.startswith(dead_prefix)]) == 2
        shm.sweep_dead()
        assert [n for n in os.listdir(shm.SHM_DIR) if n.startswith(dead_prefix)] == []
        assert kept in os.listdir(shm.SHM_DIR)
    finally:
        mine.close()


def test_a_worker_claims_its_client_s_spare_file_for_the_result_and_a_second_writer_gets_its_own():
    segs = shm.Segments()
    earlier = [segs.put(b"an earlier input"), segs.put(b"another")]
    for done in earlier:
        segs.release(done)  # kept: the next task's input and spare
    name = segs.put(b"input")
    spare = segs.spare()
    assert spare is not None and shm.parse_ref(f"{name} {spare}") == (name, spare)
    inode = os.stat(os.path.join(shm.SHM_DIR, spare)).st_ino
    result = shm.write_result(name, b"result", spare)
    assert os.stat(os.path.join(shm.SHM_DIR, result)).st_ino == inode  # the spare, renamed: no new file
    assert shm.read_result(result, 100) == b"result"
    other = shm.write_result(name, b"result", spare)  # a straggler's copy (this process again, for the test)
    assert other == result and shm.read_result(other, 100) == b"result"
    segs.drop_spare(spare)  # claimed: nothing to drop
    assert spare not in os.listdir(shm.SHM_DIR)
    foreign = shm.Segments().put(b"another client's file")
    try:
        shm.write_result(name, b"r", foreign)
        assert foreign in os.listdir(shm.SHM_DIR)  # not this input's client: never renamed
    finally:
        shm.unlink(foreign)
    segs.take_result(name, result, 100)
    segs.release(name)
    segs.close()
    assert _mine(segs) == []
