"""The batch command line as a new user runs it: nothing lost, nothing replaced, one clear
message for a bad pipeline, metadata beside the results, a readable --info."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from cluster_helpers import DATA, Cluster, free_port

pytestmark = pytest.mark.timeout(120)
RUN_TIMEOUT_S = 90


def client(*args: str, broker: Cluster | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    connect = broker.front if broker is not None else f"tcp://127.0.0.1:{free_port()}"
    cmd = [sys.executable, "-m", "engine.client", "--connect", connect, "--connect-timeout-s", "5", "--quiet",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env)


def grey_psnr(result: Path, source: Path) -> float:
    """PSNR of a written result against OpenCV's own grey conversion of its input."""
    expected = cv2.cvtColor(cv2.imread(str(source)), cv2.COLOR_BGR2GRAY)
    got = cv2.imread(str(result), cv2.IMREAD_UNCHANGED)
    assert got is not None and got.shape[:2] == expected.shape, result
    if got.ndim == 3:
        got = cv2.cvtColor(got, cv2.COLOR_BGR2GRAY)
    return cv2.PSNR(got, expected)


def test_same_name_different_format_both_written_and_counted(broker, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("chelsea.jpg", "chelsea.png"):
        shutil.copy(DATA / name, src / name)
    done = client("--pipeline", "grayscale|png", str(src), "-o", str(tmp_path / "out"), broker=broker)
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["chelsea.jpg.png", "chelsea.png"]
    assert "2 image(s), 0 failed, 2 written" in done.stdout
    assert grey_psnr(tmp_path / "out" / "chelsea.jpg.png", src / "chelsea.jpg") > 40
    assert grey_psnr(tmp_path / "out" / "chelsea.png", src / "chelsea.png") > 40


def test_same_relative_path_from_two_folders_is_refused_before_any_work(broker, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(DATA / "coins.jpg", tmp_path / folder / "photo.jpg")
    done = client("--pipeline", "grayscale", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "out"),
                  broker=broker)
    assert done.returncode == 2
    assert "more than one input" in done.stderr and "a/photo.jpg" in done.stderr and "b/photo.jpg" in done.stderr
    assert not (tmp_path / "out").exists()


def test_output_folder_equal_to_input_folder_never_touches_the_originals(broker, tmp_path):
    shutil.copy(DATA / "coins.jpg", tmp_path / "coins.jpg")
    before = (tmp_path / "coins.jpg").read_bytes()
    for extra in ([], ["--overwrite"]):
        done = client("--pipeline", "grayscale", str(tmp_path), "-o", str(tmp_path), *extra, broker=broker)
        assert done.returncode == 2 and "replace an input" in done.stderr, done.stderr
        assert (tmp_path / "coins.jpg").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coins.jpg"]


def test_existing_output_is_kept_unless_overwrite(broker, tmp_path):
    shutil.copy(DATA / "coins.jpg", tmp_path / "coins.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (out / "coins.jpg").write_bytes(b"precious")
    done = client("--pipeline", "grayscale", str(tmp_path / "coins.jpg"), "-o", str(out), broker=broker)
    assert done.returncode == 2 and "already exist" in done.stderr and "--overwrite" in done.stderr
    assert (out / "coins.jpg").read_bytes() == b"precious"
    done = client("--pipeline", "grayscale", str(tmp_path / "coins.jpg"), "-o", str(out), "--overwrite",
                  broker=broker)
    assert done.returncode == 0, done.stderr
    assert grey_psnr(out / "coins.jpg", tmp_path / "coins.jpg") > 30  # a grey JPEG of the input
    assert sorted(p.name for p in out.iterdir()) == ["coins.jpg"]  # no temporary file left


def test_a_typo_in_the_pipeline_fails_once_with_a_suggestion(broker, tmp_path):
    for name in ("coins.jpg", "rocket.jpg", "coffee.jpg"):
        shutil.copy(DATA / name, tmp_path / name)
    done = client("--pipeline", "greyscale|png", str(tmp_path), "-o", str(tmp_path / "out"), broker=broker)
    assert done.returncode == 2
    assert "unknown operation 'greyscale' — did you mean 'grayscale'?" in done.stderr
    assert done.stderr.count("greyscale") == 1 and done.stdout == ""
    assert not (tmp_path / "out").exists()
    bad = client("--pipeline", "median:size=4", str(tmp_path), "-o", str(tmp_path / "out"), broker=broker)
    assert bad.returncode == 2 and "median: parameter 'size' must be odd" in bad.stderr, bad.stderr
    assert not (tmp_path / "out").exists()


def test_a_syntax_error_needs_no_broker_and_without_one_nothing_is_checked_against_a_local_registry(tmp_path):
    shutil.copy(DATA / "coins.jpg", tmp_path / "coins.jpg")
    syntax = client("--pipeline", "resize:640", str(tmp_path), "-o", str(tmp_path / "out"))  # no broker
    assert syntax.returncode == 2 and "expected key=value" in syntax.stderr and "no broker" not in syntax.stderr
    down = client("--pipeline", "greyscale|png", str(tmp_path), "-o", str(tmp_path / "out"))
    assert down.returncode == 2 and down.stdout == ""
    assert "no broker listens" in down.stderr and "nothing was sent" in down.stderr, down.stderr
    assert "unknown operation" not in down.stderr  # the workers' operations decide, not this command line's
    assert not (tmp_path / "out").exists()


def test_the_command_line_checks_against_what_the_workers_declared_not_its_own_engine(cluster_factory, tmp_path):
    """The workers offer the test operations (``sleep``); this command line's own engine does
    not: a command line of another version than its workers takes what they accept."""
    from faults_helpers import start, tiny_jpeg

    cluster = start(cluster_factory, (1,))  # workers started with --test-ops; this command line registers none
    (tmp_path / "a.jpg").write_bytes(tiny_jpeg(32))
    env = dict(os.environ)
    out = tmp_path / "out"
    done = client("--pipeline", "sleep:ms=1|grayscale|png", str(tmp_path / "a.jpg"), "-o", str(out),
                  broker=cluster, env=env)
    assert done.returncode == 0, done.stderr
    assert (out / "a.png").read_bytes().startswith(b"\x89PNG")
    typo = client("--pipeline", "sleep:ms=1|grayscale|pgn", str(tmp_path / "a.jpg"), "-o", str(out),
                  broker=cluster, env=env)
    assert typo.returncode == 2 and "unknown operation 'pgn' — did you mean 'png'?" in typo.stderr, typo.stderr
    assert " sleep," in typo.stderr  # the workers' list of what they offer


def test_the_command_line_and_the_client_import_neither_opencv_nor_the_operations(broker, tmp_path):
    shutil.copy(DATA / "coins.jpg", tmp_path / "coins.jpg")
    argv = ["--connect", broker.front, "--quiet", "--pipeline", "resize:width=64|grayscale|png",
            str(tmp_path / "coins.jpg"), "-o", str(tmp_path / "out")]
    code = ("import sys, engine.client, engine.client.__main__ as cli\n"
            f"rc = cli.main({argv!r})\n"  # the whole check path: INFO, the check, the plan, the batch
            "print(rc, sorted(m for m in ('cv2', 'numpy', 'engine.ops') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0 []", done.stdout
    assert (tmp_path / "out" / "coins.png").exists()


def test_meta_file_has_one_line_per_image_with_sizes_timings_and_detections(broker, tmp_path):
    for name in ("astronaut.jpg", "coins.jpg"):
        shutil.copy(DATA / name, tmp_path / name)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    meta = tmp_path / "out" / "meta.jsonl"
    done = client("--pipeline", "faces|png", str(tmp_path), "-o", str(tmp_path / "out"), "--meta", str(meta),
                  broker=broker)
    assert done.returncode == 1, done.stderr
    assert "3 image(s), 1 failed, 2 written" in done.stdout
    lines = {Path(x["input"]).name: x for x in map(json.loads, meta.read_text().splitlines())}
    assert set(lines) == {"astronaut.jpg", "coins.jpg", "broken.jpg"}
    astronaut = lines["astronaut.jpg"]
    h, w = cv2.imread(str(DATA / "astronaut.jpg")).shape[:2]
    assert astronaut["ok"] and (astronaut["meta"]["width"], astronaut["meta"]["height"]) == (w, h)
    assert astronaut["meta"]["pipeline_ms"] > 0 and len(astronaut["meta"]["faces"]) >= 1
    assert Path(astronaut["output"]).exists()
    assert lines["broken.jpg"]["ok"] is False and lines["broken.jpg"]["error"]["code"] == "bad_image"
    assert lines["broken.jpg"]["output"] is None


def test_info_is_a_short_summary_and_json_on_request(broker):
    done = client("--info", broker=broker)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"broker {broker.front}: up")
    assert "worker(s)" in done.stdout and "queue:" in done.stdout and "completed" in done.stdout
    assert len(done.stdout.splitlines()) < 12
    full = json.loads(client("--info", "--json", broker=broker).stdout)
    assert len(full["workers"]) == 1 and "ops" in full


def test_info_history_counts_the_tasks_of_the_last_minutes(broker):
    from faults_helpers import wait_until

    from engine import Client
    from engine.client.summary import history_lines

    with Client(broker.front) as c:
        def last_row() -> list:
            rows = c.info(history=True)["history"]["rows"]
            return rows[-1] if len(rows) >= 2 else [None, -1]

        wait_until(lambda: last_row()[1] >= 0, timeout_s=30)  # two samples: the tasks land after the first
        before = last_row()[1]
        for r in c.map([(DATA / "coins.jpg").read_bytes()] * 3, "grayscale"):
            assert r.width > 0
        wait_until(lambda: last_row()[1] >= before + 3, timeout_s=30)  # a sample taken after them
    done = client("--info", "--history", broker=broker)
    assert done.returncode == 0, done.stderr
    minutes = [line for line in done.stdout.splitlines() if " min ago: " in line]
    assert "last minutes (oldest first):" in done.stdout and 1 <= len(minutes) <= 10
    assert sum(int(line.split(": ")[1].split(" completed")[0]) for line in minutes) >= 3
    full = json.loads(client("--info", "--json", "--history", broker=broker).stdout)
    assert full["history"]["columns"][:2] == ["age_s", "completed"]
    # the arithmetic on a known table: minutes 2, 1 and 0 ago, one sample before them
    table = {"step_s": 2.0, "columns": ["age_s", "completed", "failed", "queue_depth", "in_flight"],
             "rows": [[130.0, 5, 0, 0, 0], [125.0, 9, 1, 4, 2], [70.0, 20, 1, 7, 2], [10.0, 21, 3, 0, 0]]}
    assert history_lines(table) == ["last minutes (oldest first):",
                                    "   2-3 min ago: 4 completed, 1 failed, queue up to 4",
                                    "   1-2 min ago: 11 completed, 0 failed, queue up to 7",
                                    "   0-1 min ago: 1 completed, 2 failed, queue up to 0"]
    assert history_lines(table, minutes=1)[1:] == ["   0-1 min ago: 1 completed, 2 failed, queue up to 0"]
    assert "not enough samples" in history_lines({**table, "rows": table["rows"][:1]})[0]


def test_info_with_the_broker_down_says_so_on_stderr_only():
    done = client("--info", "--connect-timeout-s", "1")
    assert done.returncode == 2
    assert done.stdout == "" and "no broker listens" in done.stderr


def test_with_nothing_listening_on_loopback_info_and_a_batch_say_so_long_before_the_connect_timeout(tmp_path):
    """Issue 25: a refused connection on loopback is known at once (libzmq's monitor says so);
    both used to wait the whole --connect-timeout-s (10 s by default) first."""
    shutil.copy(DATA / "coins.jpg", tmp_path / "coins.jpg")
    port = free_port()  # bound and closed: nothing listens there
    for args in (["--info"], [str(tmp_path), "-o", str(tmp_path / "out")]):
        started_s = time.monotonic()
        done = client(*args, "--connect", f"tcp://127.0.0.1:{port}", "--connect-timeout-s", "10")
        waited_s = time.monotonic() - started_s
        assert done.returncode == 2 and done.stdout == "", done.stderr
        assert (f"no broker listens on tcp://127.0.0.1:{port} (connection refused): start one with engine-broker "
                "(or make run), or give --connect") in done.stderr, done.stderr
        assert "waiting up to" not in done.stderr  # nothing is waited for on loopback
        assert waited_s < 5, f"{args}: answered after {waited_s:.1f} s, as if it waited for the 10 s timeout"
    assert not (tmp_path / "out").exists()


def test_a_remote_broker_is_waited_for_and_the_wait_said_up_front():
    done = client("--info", "--connect", "tcp://192.0.2.1:5555", "--connect-timeout-s", "1")  # TEST-NET-1: nobody
    assert done.returncode == 2 and done.stdout == ""
    first, *rest = done.stderr.splitlines()
    assert first == "waiting up to 1 s for the broker at tcp://192.0.2.1:5555 (--connect-timeout-s)", done.stderr
    assert "no broker answered at tcp://192.0.2.1:5555 within 1 s" in done.stderr and "waiting" not in "".join(rest)


def test_help_explains_pipelines_and_the_no_overwrite_rule():
    done = subprocess.run([sys.executable, "-m", "engine.client", "--help"], capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0
    assert "steps separated by '|'" in done.stdout and "--overwrite" in done.stdout and "--meta" in done.stdout
    ops_help = subprocess.run([sys.executable, "-m", "engine.ops"], capture_output=True, text=True,
                              timeout=RUN_TIMEOUT_S).stdout
    assert "steps separated by '|'" in ops_help and "required" in ops_help


def test_a_second_run_into_the_same_folder_writes_nothing_and_says_why(broker, tmp_path):
    shutil.copy(DATA / "coins.jpg", tmp_path / "coins.jpg")
    out = tmp_path / "out"
    assert client("--pipeline", "edge|png", str(tmp_path), "-o", str(out), broker=broker).returncode == 0
    first = (out / "coins.png").read_bytes()
    expected = cv2.Canny(cv2.cvtColor(cv2.imread(str(DATA / "coins.jpg")), cv2.COLOR_BGR2GRAY), 100, 200)
    got = cv2.imdecode(np.frombuffer(first, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert got.shape == expected.shape and np.mean(got == expected) > 0.95
    again = client("--pipeline", "edge|png", str(tmp_path), "-o", str(out), broker=broker)
    assert again.returncode == 2 and "already exist" in again.stderr
    assert (out / "coins.png").read_bytes() == first


def test_results_get_the_usual_permissions_and_a_resumed_batch_skips_what_is_there(broker, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("coins.jpg", "camera.jpg", "astronaut.jpg"):
        shutil.copy(DATA / name, src / name)
    out = tmp_path / "out"
    first = client("--pipeline", "grayscale|png", str(src), "-o", str(out), "--meta", str(out / "m.jsonl"),
                   broker=broker)
    assert first.returncode == 0, first.stderr
    written = sorted(out.glob("*.png"))
    assert [p.name for p in written] == ["astronaut.png", "camera.png", "coins.png"]
    mask = os.umask(0o022)
    os.umask(mask)
    assert {p.stat().st_mode & 0o777 for p in written} == {0o666 & ~mask} == {(out / "m.jsonl").stat().st_mode & 0o777}
    (out / "camera.png").unlink()
    kept = (out / "coins.png").stat().st_mtime_ns
    again = client("--pipeline", "grayscale|png", str(src), "-o", str(out), "--meta", str(out / "m.jsonl"),
                   "--skip-existing", broker=broker)
    assert again.returncode == 0, again.stderr
    assert "3 image(s), 0 failed, 1 written, 2 skipped" in again.stdout
    assert grey_psnr(out / "camera.png", src / "camera.jpg") > 40 and (out / "coins.png").stat().st_mtime_ns == kept
    assert len((out / "m.jsonl").read_text().splitlines()) == 4  # appended to, not replaced
    both = client("--pipeline", "grayscale", str(src), "-o", str(out), "--skip-existing", "--overwrite", broker=broker)
    assert both.returncode == 2 and "choose one" in both.stderr


def test_ctrl_c_prints_the_summary_and_how_to_resume_without_a_traceback(cluster_factory, tmp_path):
    import signal
    import time

    from faults_helpers import start, tiny_jpeg

    cluster = start(cluster_factory, (2,))
    src = tmp_path / "in"
    src.mkdir()
    for i in range(40):
        (src / f"{i:02d}.jpg").write_bytes(tiny_jpeg(16 + i))
    out = tmp_path / "out"
    # The workers offer the test-only ``sleep`` (--test-ops); the command line checks against what
    # they declared. 40 tasks of 0.2 s, two at a time: ~4 s, so the interrupt lands mid-batch.
    cmd = [sys.executable, "-m", "engine.client", "--connect", cluster.front, "--quiet", "--window", "2",
           "--pipeline", "sleep:ms=200|grayscale", str(src), "-o", str(out)]
    # Ctrl-C as a terminal delivers it: a suite started in the background of a script (``cmd &``)
    # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler in the child.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not list(out.glob("*.jpg")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert "not finished" in stdout and "--skip-existing" in stderr
    written = len(list(out.glob("*.jpg")))
    assert 0 < written < 40 and f"{written} written" in stdout
    resumed = subprocess.run(cmd + ["--skip-existing"], capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert resumed.returncode == 0, resumed.stderr
    assert f"40 image(s), 0 failed, {40 - written} written, {written} skipped" in resumed.stdout
    assert len(list(out.glob("*.jpg"))) == 40


def test_help_names_the_command_as_invoked_and_settings_come_from_the_environment(monkeypatch):
    from engine.client.__main__ import parse_args
    from engine.settings import prog

    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/engine-broker"])
    assert prog("engine.broker") == "engine-broker"
    monkeypatch.setattr(sys, "argv", ["/src/engine/broker/__main__.py"])
    assert prog("engine.broker") == "python -m engine.broker"
    monkeypatch.setenv("ENGINE_META", "results.jsonl")
    monkeypatch.setenv("ENGINE_QUIET", "yes")
    args = parse_args(["photo.jpg", "-o", "out"])
    assert args.meta == Path("results.jsonl") and args.quiet is True
    assert parse_args(["photo.jpg", "-o", "out", "--no-quiet"]).quiet is False


def test_with_stderr_not_a_terminal_the_final_progress_line_is_printed_once(broker, tmp_path):
    for i in range(12):
        shutil.copy(DATA / "coins.jpg", tmp_path / f"{i:02d}.jpg")
    cmd = [sys.executable, "-m", "engine.client", "--connect", broker.front, "--window", "2",
           "--pipeline", "sharpen|edge|png", str(tmp_path), "-o", str(tmp_path / "out")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)  # stderr: a pipe
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "\x1b" not in done.stderr  # no bar redrawn in place, no residue
    assert done.stderr.splitlines() == [done.stderr.strip()] and done.stderr.startswith("100% 12/12 ["), done.stderr
    assert "img/s]" in done.stderr
    assert "12 image(s), 0 failed, 12 written" in done.stdout


def test_what_a_folder_holds_and_is_not_sent_is_counted_in_the_summary(broker, tmp_path):
    src = tmp_path / "in"
    for folder in ("2023", "2024"):
        (src / folder).mkdir(parents=True)
        shutil.copy(DATA / "camera.jpg", src / folder / "camera.jpg")
    shutil.copy(DATA / "coins.jpg", src / "coins.jpg")
    (src / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    (src / "notes.txt").write_text("not an image")
    done = client("--pipeline", "grayscale", str(src), "-o", str(tmp_path / "out"), broker=broker)
    assert done.returncode == 0, done.stderr
    assert "1 image(s), 0 failed, 1 written" in done.stdout
    assert "skipped 4: 2 folders (use --recursive), 1 broken link, 1 not an image" in done.stdout, done.stdout
    deep = client("--pipeline", "grayscale", str(src), "--recursive", "-o", str(tmp_path / "deep"), broker=broker)
    assert deep.returncode == 0, deep.stderr
    assert "3 image(s), 0 failed, 3 written" in deep.stdout
    assert deep.stdout.splitlines()[1] == "skipped 2: 1 broken link, 1 not an image", deep.stdout
    only_folders = tmp_path / "albums"
    (only_folders / "2024").mkdir(parents=True)
    shutil.copy(DATA / "coins.jpg", only_folders / "2024" / "coins.jpg")
    none = client("--pipeline", "grayscale", str(only_folders), "-o", str(tmp_path / "none"), broker=broker)
    assert none.returncode == 2 and "no images found" in none.stderr
    assert "skipped 1: 1 folder (use --recursive)" in none.stderr, none.stderr


def test_a_json_pipeline_writes_each_images_metadata_as_name_json(broker, tmp_path):
    for name in ("astronaut.jpg", "coins.jpg", "coins.png"):
        shutil.copy(DATA / name, tmp_path / name)
    out = tmp_path / "out"
    done = client("--pipeline", "faces|json", str(tmp_path), "-o", str(out), broker=broker)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "3 image(s), 0 failed, 3 written" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.json", "coins.jpg.json", "coins.png.json"]
    astronaut = json.loads((out / "astronaut.json").read_text())
    h, w = cv2.imread(str(DATA / "astronaut.jpg")).shape[:2]
    assert astronaut["format"] == "json" and (astronaut["width"], astronaut["height"]) == (w, h)
    assert len(astronaut["faces"]) >= 1
    helped = subprocess.run([sys.executable, "-m", "engine.client", "--help"], capture_output=True, text=True,
                            timeout=RUN_TIMEOUT_S).stdout
    assert "NAME.json" in helped


def test_a_format_step_before_another_step_is_refused_by_the_command_line_and_the_broker(broker, tmp_path):
    from engine import Client
    from engine.errors import PipelineError

    shutil.copy(DATA / "coins.jpg", tmp_path / "coins.jpg")
    done = client("--pipeline", "png|grayscale", str(tmp_path), "-o", str(tmp_path / "out"), broker=broker)
    assert done.returncode == 2 and done.stdout == ""
    message = ("'png' comes before 'grayscale': format steps (jpeg, json, png, webp) go last and choose the output "
               "format (nothing is encoded between steps); write 'grayscale|png'")
    assert message in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()
    with Client(broker.front, timeout_s=30) as library:  # checks only the syntax: the broker refuses it
        with pytest.raises(PipelineError) as refused:
            library.process((tmp_path / "coins.jpg").read_bytes(), "png|grayscale")
    assert refused.value.code == "bad_pipeline" and refused.value.message == message


def test_an_input_gone_since_it_was_found_fails_alone_with_read_failed(broker, tmp_path):
    import io

    from engine import Client
    from engine.client import batch
    from engine.client.outputs import Item

    shutil.copy(DATA / "coins.jpg", tmp_path / "coins.jpg")
    items = [Item(tmp_path / "gone.jpg", tmp_path / "out" / "gone.jpg"),
             Item(tmp_path / "coins.jpg", tmp_path / "out" / "coins.jpg")]
    meta = io.StringIO()
    with Client(broker.front, timeout_s=30) as library:
        outcome = batch.run(library, items, "grayscale", window=2, overwrite=False, meta_out=meta, quiet=True)
    assert outcome.written == [tmp_path / "out" / "coins.jpg"] and [s for s, _ in outcome.failed] == [items[0].source]
    lines = {Path(x["input"]).name: x for x in map(json.loads, meta.getvalue().splitlines())}
    gone = lines["gone.jpg"]["error"]
    assert gone["code"] == "read_failed" and "could not read" in gone["message"]
