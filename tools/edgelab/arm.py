"""An emulated ARM worker: an arm64 Debian root file system (debootstrap from Debian's
archive), the project installed in it by ``pip install`` alone, and its worker run through
``qemu-user-static`` inside one of the lab's hosts, joined to the lab's broker.

    python -m tools.edgelab arm --root /var/tmp/edgelab-arm64     # build once (slow), then run

Steps, each skipped when already done: ``debootstrap --arch=arm64 bookworm`` with
python3-venv; a copy of this project's sources in ROOT/opt/engine; ``python3 -m venv`` and
``pip install /opt/engine`` in the root (emulated: every instruction runs under qemu);
then a lab with a LAN broker, a LAN client and an ``arm`` host whose worker runs
``chroot ROOT /opt/venv/bin/python -m engine.worker``. Needs root, debootstrap,
qemu-user-static with binfmt_misc (``apt-get install qemu-user-static debootstrap
binfmt-support``) and network access to Debian's archive and PyPI for the build.
Figures from it are emulated ARM on an x86 host, not a board's speed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from engine.errors import ConfigError

from .lab import REPO, Lab
from .runner import PY, _readline_within

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PROJECT_FILES = ("engine", "pyproject.toml", "setup.cfg", "README.md")
BUILD_TIMEOUT_S = 3600


def _step(label: str, argv: list[str], log: Path) -> float:
    start_s = time.monotonic()
    with open(log, "ab") as out:
        out.write(f"\n### {label}: {' '.join(argv)}\n".encode())
        out.flush()
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S)
    if done.returncode != 0:
        raise ConfigError(f"{label} failed (exit {done.returncode}); see {log}")
    return round(time.monotonic() - start_s, 1)


def build(root: Path, log: Path) -> dict:
    """Make the arm64 root and install the project in it; returns seconds per step."""
    if not Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists():
        raise ConfigError("no binfmt_misc entry for aarch64: apt-get install qemu-user-static binfmt-support "
                          "(and mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc)")
    took = {}
    if not (root / "usr/bin/python3").exists():
        took["debootstrap_s"] = _step("debootstrap", ["debootstrap", "--arch=arm64",
                                                      "--include=python3,python3-venv,python3-pip,ca-certificates",
                                                      SUITE, str(root), MIRROR], log)
    src = root / "opt/engine"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for name in PROJECT_FILES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    shutil.copy2("/etc/resolv.conf", root / "etc/resolv.conf")
    # pip in the root trusts what pip on this host trusts (a site's TLS proxy, for one).
    host_ca = Path(os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt")
    if host_ca.is_file():
        shutil.copy2(host_ca, root / "etc/ssl/certs/ca-certificates.crt")  # Debian's pip reads this one
    if not (root / "opt/venv/bin/python").exists():
        took["venv_s"] = _step("venv", ["chroot", str(root), "python3", "-m", "venv", "/opt/venv"], log)
    took["pip_install_s"] = _step("pip install", ["chroot", str(root), "/usr/bin/env", "-u", "PIP_FIND_LINKS", "-u",
                                                  "PIP_CERT", "/opt/venv/bin/pip", "install", "--no-cache-dir",
                                                  "/opt/engine"], log)
    return took


def run(root: Path, tasks: int, log_dir: Path | None = None) -> dict:
    """A lab with the arm worker alone; a short batch; its throughput (emulated)."""
    with Lab(log_dir=log_dir) as lab:
        lab.add_host("broker")
        lab.add_host("client")
        lab.add_host("arm")
        back = f"tcp://{lab.addr('broker')}:5556"
        lab.spawn("broker", [PY, "-m", "engine.broker", "--public", "--front", "tcp://*:5555", "--back",
                             "tcp://*:5556", "--local-workers", "0", "--cache-mb", "0", "--log-level", "warning"],
                  "broker")
        # ip netns exec gives the command its own mount namespace: these mounts go with it.
        chrooted = (f"mount -t proc proc {root}/proc && mount -t sysfs sysfs {root}/sys && "
                    f"mount --bind /dev {root}/dev && "
                    f"mount -t tmpfs tmpfs {root}/dev/shm && exec chroot {root} "
                    f"/opt/venv/bin/python -m engine.worker --connect {back} --processes 1 --log-level info")
        lab.spawn("arm", ["sh", "-c", chrooted], "worker-arm")
        driver = lab.spawn("client", [PY, "-m", "tools.edgelab.drive", "--connect",
                                      f"tcp://{lab.addr('broker')}:5555", "--tasks", str(tasks), "--pipeline",
                                      "grayscale", "--window", "4", "--wait-workers", "1", "--timeout-s", "300"],
                           "driver", stdout=subprocess.PIPE)
        if _readline_within(driver, 600).strip() != "go":
            raise ConfigError(f"the emulated arm worker did not register within 600 s; see {lab.log_dir}")
        import json

        result = json.loads(_readline_within(driver, tasks * 10 + 300) or "{}")
        machine = subprocess.run(["chroot", str(root), "uname", "-m"], capture_output=True, text=True).stdout.strip()
    return {"machine": machine, "emulated": True, "result": result}
