"""What machine a result came from: CPU, cores, SIMD, memory, OS, and library versions.

Every value that cannot be found is the string "unknown", never a guess.
"""
from __future__ import annotations

import os
import platform
import re
import sys
from importlib import metadata
from pathlib import Path

UNKNOWN = "unknown"
# SIMD features worth naming for image work (x86 and Arm spellings from /proc/cpuinfo).
SIMD_FLAGS = ("sse2", "ssse3", "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw",
              "avx512vl", "avx512_vnni", "neon", "asimd", "asimdhp", "sve", "sve2")


def _cpuinfo() -> dict[str, str]:
    """The first processor's block of /proc/cpuinfo as a dict (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        key, _, value = line.partition(":")
        out.setdefault(key.strip(), value.strip())
    return out


def cpu_model(info: dict[str, str]) -> str:
    for key in ("model name", "Hardware", "Model", "cpu model"):
        if info.get(key):
            return info[key]
    return platform.processor() or UNKNOWN


def simd_flags(info: dict[str, str]) -> list[str]:
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return [f for f in SIMD_FLAGS if f in flags]


def memory_gib() -> float | str:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        return UNKNOWN


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return UNKNOWN


def libjpeg_turbo_version() -> str:
    """The libjpeg-turbo built into simplejpeg (it does not expose it; its binary names it)."""
    try:
        import simplejpeg
    except ImportError:
        return UNKNOWN
    pattern = re.compile(rb"libjpeg-turbo version (\d+\.\d+\.\d+)")
    for lib in Path(simplejpeg.__file__).parent.glob("_jpeg*"):
        match = pattern.search(lib.read_bytes())
        if match:
            return match.group(1).decode()
    return UNKNOWN


def opencv_jpeg() -> str:
    try:
        import cv2

        match = re.search(r"JPEG:\s*(.+)", cv2.getBuildInformation())
        return match.group(1).strip() if match else UNKNOWN
    except ImportError:
        return UNKNOWN


def versions() -> dict[str, str]:
    out = {name: _version(dist) for name, dist in (
        ("opencv", "opencv-python-headless"), ("numpy", "numpy"), ("simplejpeg", "simplejpeg"),
        ("pyzmq", "pyzmq"), ("msgpack", "msgpack"), ("engine", "zmq-image-engine"), ("celery", "celery"),
        ("redis-py", "redis"), ("dask", "dask"), ("distributed", "distributed"), ("ray", "ray"),
        ("psutil", "psutil"))}
    if out["opencv"] == UNKNOWN:
        out["opencv"] = _version("opencv-python")
    try:
        import zmq

        out["libzmq"] = zmq.zmq_version()
    except ImportError:
        out["libzmq"] = UNKNOWN
    out["libjpeg-turbo (simplejpeg)"] = libjpeg_turbo_version()
    out["jpeg (opencv build)"] = opencv_jpeg()
    return out


def fingerprint() -> dict:
    info = _cpuinfo()
    return {
        "cpu_model": cpu_model(info),
        "machine": platform.machine(),
        "logical_cores": os.cpu_count() or 0,
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "simd": simd_flags(info),
        "memory_gib": memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "libc": " ".join(platform.libc_ver()) or UNKNOWN,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
        "versions": versions(),
        "opencv_threads_per_process": os.environ.get("OPENCV_FOR_THREADS_NUM", "OpenCV's default"),
    }


def target_name(fp: dict) -> str:
    """A short directory name for this kind of machine, such as ``x86_64-2core``."""
    return f"{fp['machine'] or 'unknown'}-{fp['usable_cores']}core"
