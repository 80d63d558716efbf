"""The HTTP servers ``bench/http_peers.py`` compares, each started on free loopback ports
in its own process group and torn down with everything it started.

- ``EngineHttp``: ``python -m engine.broker --local-workers N --cache-mb 0 --web HOST:PORT``
  (the broker, one worker supervisor with N pool processes, the web gateway), as
  ``make run`` starts it; one signed-up user with an API token POSTs each image's bytes
  to ``/api/v1/process?pipeline=...``.
- ``Thumbor``: ``python -m thumbor.server --processes N`` with the file loader on a folder
  holding the same JPEGs, storage and result storage off; an unsafe URL per image,
  ``GET /unsafe/fit-in/512x512/filters:quality(80)/<name>``.
"""
from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import cv2
import simplejpeg

from .httpload import Request, fetch
from .peers.base import Skip, free_port
from .workloads import DATA, FRAME_SOURCES, JPEG_QUALITY

HOST = "127.0.0.1"
BOX_PX = 512  # fit inside BOX_PX x BOX_PX
QUALITY = 80  # JPEG quality of the answers
LONG_SIDE_PX = 2048  # the inputs' long side, as in imgproxy's image-servers-benchmark (~2K JPEGs)
# 4:2:0 chroma, as thumbor (Pillow) writes it: the same output, not only the same size.
ENGINE_PIPELINE = (f"resize:width={BOX_PX},height={BOX_PX},mode=fit,upscale=false"
                   f"|jpeg:quality={QUALITY},subsampling=420")
THUMBOR_PATH = f"/unsafe/fit-in/{BOX_PX}x{BOX_PX}/filters:quality({QUALITY})/{{name}}"
READY_TIMEOUT_S = 60.0
READY_POLL_S = 0.2
STOP_TIMEOUT_S = 30.0  # the broker drains its gateway and workers (up to 15 s each) on SIGTERM
PASSWORD = "http-bench password"
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def input_images() -> list[tuple[str, bytes, tuple[int, int]]]:
    """(file name, JPEG bytes, (width, height)) of each benchmark input: the sample photographs
    scaled to a 2048-px long side, the short side a multiple of 4 so that fitting into 512x512
    is an exact quarter for every resizer (no rounding differences), JPEG quality 90."""
    out = []
    for name in FRAME_SOURCES:
        image = cv2.imread(str(DATA / name), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"sample photograph {DATA / name} is missing or unreadable")
        h, w = image.shape[:2]
        scale = LONG_SIDE_PX / max(w, h)
        size = (max(4, round(w * scale / 4) * 4), max(4, round(h * scale / 4) * 4))
        big = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
        out.append((f"{Path(name).stem}-{size[0]}x{size[1]}.jpg",
                    simplejpeg.encode_jpeg(big, JPEG_QUALITY, colorspace="BGR"), size))
    return out


def expected_size(size: tuple[int, int]) -> tuple[int, int]:
    """Fit ``size`` into the box, never enlarging."""
    scale = min(1.0, BOX_PX / size[0], BOX_PX / size[1])
    return round(size[0] * scale), round(size[1] * scale)


def start_group(cmd: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start ``cmd`` as the leader of a new process group (and session), output to ``log_path``.
    Ctrl-C on the terminal then reaches only this script, which stops the group itself."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def stop_group(proc: subprocess.Popen, *, leader_first: bool, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the leader (``leader_first``: it stops its own children) or the whole group, wait
    for the leader, then SIGKILL whatever is left in the group. Never raises."""
    def signal_group(sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    if proc.poll() is None:
        if leader_first:
            proc.send_signal(signal.SIGTERM)
        else:
            signal_group(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            pass
    signal_group(signal.SIGKILL)  # stragglers; the group is ours alone (start_new_session)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        pass


def wait_http(port: int, path: str, proc: subprocess.Popen, log_path: Path, *, ok=lambda status: status == 200,
              timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline_s = time.monotonic() + timeout_s
    while time.monotonic() < deadline_s:
        if proc.poll() is not None:
            raise Skip(f"exited with code {proc.returncode} while starting; last output: {tail(log_path)}")
        try:
            if ok(fetch(HOST, port, Request("GET", path), timeout_s=2.0)[0]):
                return
        except OSError:
            pass
        time.sleep(READY_POLL_S)
    raise Skip(f"no answer on http://{HOST}:{port}{path} within {timeout_s:.0f} s; last output: {tail(log_path)}")


def tail(path: Path, chars: int = 600) -> str:
    try:
        return path.read_text(errors="replace")[-chars:].strip() or "(none)"
    except OSError:
        return "(none)"


class Server:
    """One HTTP peer. ``start`` returns when it answers; ``requests`` are what the client sends."""

    name = "server"
    leader_first = True  # on stop, SIGTERM the leader alone: it stops its own children

    def __init__(self, *, processes: int, images, workdir: Path) -> None:
        self.processes, self.images, self.workdir = processes, images, workdir
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"{self.name}.log"
        self.port = 0
        self.cmd: list[str] = []
        self.requests: list[Request] = []

    def missing(self) -> str | None:
        return None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, leader_first=self.leader_first)

    def roles(self) -> dict[str, list[int]]:
        """Process trees to charge CPU to, most specific first (bench.measure.CpuSampler)."""
        return {"server": [self.proc.pid] if self.proc else []}

    def versions(self) -> dict[str, str]:
        return {}

    def notes(self) -> str:
        return ""


class EngineHttp(Server):
    """``?history=false``: the answer only, as thumbor gives it (nothing stored)."""

    name = "engine"
    keep = False

    def start(self) -> None:
        from .peers.engine import broker_ready

        data_dir = self.workdir / "engine-web-data"
        data_dir.mkdir()
        self.port = free_port()
        front, back = f"tcp://{HOST}:{free_port()}", f"tcp://{HOST}:{free_port()}"
        self.cmd = [sys.executable, "-m", "engine.broker", "--front", front, "--back", back,
                    "--local-workers", str(self.processes), "--cache-mb", "0", "--web", f"{HOST}:{self.port}",
                    "--log-level", "warning"]
        # The gateway is started by the broker and reads these: a throw-away history, a quota no
        # run reaches (every answer counts against it), no access log line per request.
        env = {**os.environ, "ENGINE_LOG_LEVEL": "warning", "ENGINE_WEB_DATA_DIR": str(data_dir),
               "ENGINE_WEB_QUOTA_MB": str(1 << 20), "ENGINE_WEB_ACCESS_LOG": "off"}
        self.proc = start_group(self.cmd, self.log_path, env)
        broker_ready(front, self.processes, READY_TIMEOUT_S)
        wait_http(self.port, "/api/v1/operations", self.proc, self.log_path, ok=lambda s: s < 500)
        token = self._api_token()
        pipeline = quote(ENGINE_PIPELINE, safe="")
        keep = "" if self.keep else "&history=false"
        self.requests = [Request("POST", f"/api/v1/process?pipeline={pipeline}&name={name}{keep}", data,
                                 {"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"})
                         for name, data, _size in self.images]

    def _api_token(self) -> str:
        """Sign up as a browser does (the form and its CSRF token), then create an API token."""
        import httpx

        with httpx.Client(base_url=f"http://{HOST}:{self.port}", timeout=READY_TIMEOUT_S) as web:
            page = web.get("/signup")
            r = web.post("/signup", data={"name": "bench", "password": PASSWORD, "csrf": _csrf(page.text)})
            if r.status_code != 303:
                raise Skip(f"signing up failed: HTTP {r.status_code} {r.text[:200]}")
            csrf = _csrf(web.get("/upload").text)
            r = web.post("/api/v1/tokens", json={"name": "http-bench"}, headers={"X-CSRF-Token": csrf})
            if r.status_code != 201:
                raise Skip(f"creating an API token failed: HTTP {r.status_code} {r.text[:200]}")
            return r.json()["token"]

    def roles(self) -> dict[str, list[int]]:
        """The web gateway, the worker supervisor with its pool processes, the broker itself."""
        import psutil

        if self.proc is None:
            return {}
        try:
            children = psutil.Process(self.proc.pid).children()
            named = {role: [c.pid for c in children if f"engine.{module}" in c.cmdline()]
                     for role, module in (("gateway", "web"), ("workers", "worker"))}
        except psutil.Error:
            named = {}
        return {**named, "broker": [self.proc.pid]}

    def versions(self) -> dict[str, str]:
        from importlib import metadata

        return {d: metadata.version(d) for d in ("starlette", "uvicorn")}

    def notes(self) -> str:
        return (f"python -m engine.broker --local-workers {self.processes} --cache-mb 0 --web HOST:PORT "
                f"(broker, worker supervisor + {self.processes} pool processes, web gateway; access log off); "
                f"POST /api/v1/process?pipeline={ENGINE_PIPELINE}{'' if self.keep else '&history=false'} "
                f"with the JPEG as the body")


class EngineHistory(EngineHttp):
    """The API's default: each request is a job in the user's history (input, result and a
    thumbnail stored, a database row, the retention check)."""

    name = "engine-history"
    keep = True


def _csrf(html: str) -> str:
    match = CSRF_META.search(html)
    if not match:
        raise Skip("the gateway's page has no CSRF token")
    return match.group(1)


class Thumbor(Server):
    name = "thumbor"
    leader_first = False  # tornado's fork parent dies on SIGTERM without stopping its children

    def missing(self) -> str | None:
        if importlib.util.find_spec("thumbor") is None:
            return "thumbor is not installed (pip install thumbor)"
        return None

    def start(self) -> None:
        root = self.workdir / "thumbor-images"
        root.mkdir()
        for name, data, _size in self.images:
            (root / name).write_bytes(data)
        conf = self.workdir / "thumbor.conf"
        # Everything else stays at thumbor's defaults (PIL engine, LANCZOS, progressive JPEG).
        conf.write_text("\n".join([
            "LOADER = 'thumbor.loaders.file_loader'",
            f"FILE_LOADER_ROOT_PATH = {str(root)!r}",
            "STORAGE = 'thumbor.storages.no_storage'  # no cache of the originals",
            "RESULT_STORAGE = None  # no cache of the results: every request does the work",
            "ALLOW_UNSAFE_URL = True",
            f"QUALITY = {QUALITY}",
        ]) + "\n")
        self.port = free_port()
        self.cmd = [sys.executable, "-m", "thumbor.server", "--conf", str(conf), "--ip", HOST,
                    "--port", str(self.port), "--processes", str(self.processes), "--log-level", "warning"]
        self.proc = start_group(self.cmd, self.log_path, dict(os.environ))
        wait_http(self.port, "/healthcheck", self.proc, self.log_path)
        self.requests = [Request("GET", THUMBOR_PATH.format(name=name)) for name, _data, _size in self.images]

    def versions(self) -> dict[str, str]:
        from importlib import metadata

        return {d: metadata.version(d) for d in ("thumbor", "tornado", "pillow")}

    def notes(self) -> str:
        return (f"python -m thumbor.server --processes {self.processes}; file loader, STORAGE no_storage, "
                f"RESULT_STORAGE None; GET {THUMBOR_PATH.format(name='<name>')}")


SERVERS = {"engine": EngineHttp, "engine-history": EngineHistory, "thumbor": Thumbor}
