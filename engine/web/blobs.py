"""Content-addressed image files: ``<root>/ab/cdef...`` named by the SHA-256 of the bytes.

The same image uploaded twice (or by two users) is stored once; the database says who
refers to it, and a file is removed when no job refers to it any more. Writes go to a
temporary name and are renamed into place, so a crash never leaves half a file under a
real hash. The methods are blocking; the gateway calls them with ``asyncio.to_thread``.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

_SHA = re.compile(r"^[0-9a-f]{64}$")


class BlobStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha: str) -> Path:
        if not _SHA.match(sha):
            raise ValueError(f"not a SHA-256 hex digest: {sha!r:.80}")
        return self.root / sha[:2] / sha[2:]

    def put(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        if target.exists():
            return sha
        target.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha

    def get(self, sha: str) -> bytes:
        return self.path(sha).read_bytes()

    def remove(self, sha: str) -> None:
        self.path(sha).unlink(missing_ok=True)
