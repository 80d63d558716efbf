"""The commands the README, docs/web.md and the tokens page give a new user, run word for
word (only the broker's and the gateway's addresses are this test's own)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from web_helpers import DATA, User

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTED_WEB = "http://127.0.0.1:8080"
RUN_TIMEOUT_S = 120

pytestmark = pytest.mark.timeout(300)
CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is missing (apt-get install curl)")


def shell_blocks(markdown: str, after_heading: str) -> list[str]:
    """The commands of the ```sh blocks in the section under ``after_heading``: comments cut,
    continuation lines joined."""
    section = markdown.split(after_heading, 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```(?:sh)?\n(.*?)```", section, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line:
                commands.append(line)
    return commands


@pytest.fixture(scope="module")
def user(web):
    made = User(web, "reader")
    yield made
    made.close()


@pytest.fixture
def shell(tmp_path, broker, web, user):
    """Run a documented line in bash, in a folder laid out like a checkout (tests/data), with
    the installed commands on PATH, ENGINE_CLIENT_CONNECT at the test broker and $TOKEN set."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "data").symlink_to(DATA)
    shutil.copy(DATA / "coffee.jpg", tmp_path / "in.jpg")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "ENGINE_CLIENT_CONNECT": broker.front, "TOKEN": user.token}

    def run(line: str) -> subprocess.CompletedProcess:
        line = line.replace(DOCUMENTED_WEB, web.url)
        return subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT_S)

    run.cwd = tmp_path
    return run


def is_grey_of(path: Path, source: Path) -> bool:
    got = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    want = cv2.cvtColor(cv2.imread(str(source)), cv2.COLOR_BGR2GRAY)
    return got is not None and got.ndim == 2 and got.shape == want.shape and cv2.PSNR(got, want) > 30


def test_readme_send_it_images_commands_work_as_written(shell):
    commands = shell_blocks((ROOT / "README.md").read_text(), "## Send it images")
    assert commands[0] == "engine-client --info" and len(commands) >= 5
    images = sorted(p for p in DATA.rglob("*") if p.suffix.lower() in {".jpg", ".png"})
    for line in commands:
        if line.startswith("curl") and CURL is None:
            continue
        done = shell(line)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        if line.startswith("curl"):
            assert is_grey_of(shell.cwd / "grey.png", DATA / "coffee.jpg")
    out = shell.cwd / "out"
    assert len(list(out.iterdir())) == len(images)  # coins.jpg and coins.png both kept
    assert is_grey_of(out / "coffee.jpg", DATA / "coffee.jpg")
    meta = [json.loads(x) for x in (shell.cwd / "out-edges" / "meta.jsonl").read_text().splitlines()]
    assert len(meta) == len(images) and all(m["ok"] and m["meta"]["format"] == "png" for m in meta)


def python_blocks(markdown: str, after_heading: str) -> list[str]:
    """The ```python blocks of the section under ``after_heading``, as written."""
    section = markdown.split(after_heading, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_client_and_async_client_examples_run_as_pasted(shell, broker):
    """Each Python example of "Embed the client", pasted into a file and run from a checkout
    (only the documented broker address is this test's own)."""
    blocks = python_blocks((ROOT / "README.md").read_text(), "## Embed the client")
    assert len(blocks) == 2 and "AsyncClient" in blocks[1] and "asyncio.run(" in blocks[1]
    jpgs = sorted(p.name for p in DATA.glob("*.jpg"))
    outputs = []
    for i, block in enumerate(blocks):
        assert block.count("tcp://127.0.0.1:5555") == 1
        (shell.cwd / f"example{i}.py").write_text(block.replace("tcp://127.0.0.1:5555", broker.front))
        done = shell(f"python example{i}.py")
        assert done.returncode == 0, f"{block}\n{done.stdout}\n{done.stderr}"
        outputs.append(done.stdout.splitlines())
    sync, aio = outputs
    assert sync[0].startswith("jpeg ") and len(sync) == 1 + len(jpgs) + len(jpgs) + 1
    unordered = sync[1 + len(jpgs):]
    assert sorted(line.split()[0] for line in unordered if not line.startswith("failed:")) == jpgs
    assert [line.split()[:3] for line in unordered if line.startswith("failed:")] == \
        [["failed:", str(len(jpgs)), "bad_image"]]  # the example's last input, by its index
    h, w = cv2.imread(str(DATA / "coffee.jpg")).shape[:2]
    assert aio == [f"jpeg {w} {h}"]


@needs_curl
def test_web_docs_curl_command_works_verbatim_and_fails_loudly(shell):
    (command,) = [c for c in shell_blocks((ROOT / "docs" / "web.md").read_text(), "## API") if c.startswith("curl")]
    done = shell(command)
    assert done.returncode == 0, done.stderr
    assert is_grey_of(shell.cwd / "out.png", DATA / "coffee.jpg")
    bad = shell(command.replace("grayscale|png", "greyscale|png").replace("out.png", "bad.png"))
    assert bad.returncode == 22 and "422" in bad.stderr  # curl -f: an error is an exit status, not a file
    told = shell(command.replace("curl -f", "curl -s").replace("grayscale|png", "greyscale|png")
                 .replace("-o out.png", ""))
    assert "did you mean 'grayscale'?" in json.loads(told.stdout)["error"]


@needs_curl
def test_tokens_page_curl_example_works(shell, user, web):
    html = user.browser.get("/tokens").text
    example = re.search(r'<code class="pipeline" id="curl-example">(.*?)</code>', html, re.S).group(1)
    command = example.replace("&#34;", '"').replace("&quot;", '"').replace("&amp;", "&")
    assert web.url in command
    done = shell(command)
    assert done.returncode == 0, done.stderr
    assert is_grey_of(shell.cwd / "out.png", DATA / "coffee.jpg")


def test_make_run_installs_what_running_needs_and_make_test_adds_the_test_tools():
    run = subprocess.run(["make", "-n", "-B", "run"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    test = subprocess.run(["make", "-n", "-B", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and test.returncode == 0, run.stderr + test.stderr
    assert 'install --quiet -e ".[web]"' in run.stdout and "test]" not in run.stdout
    assert "engine.broker --local-workers" in run.stdout
    assert 'install --quiet -e ".[web,test]"' in test.stdout and "-m pytest" in test.stdout
