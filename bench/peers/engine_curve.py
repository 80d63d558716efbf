"""This engine with CurveZMQ on: the same broker, local workers and client as ``engine``,
with ``--secure`` keys made for the run by ``python -m engine.keys`` (broker, one client,
one worker key). Its ratio to ``engine`` is what encryption and authentication cost."""
from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path

from .engine import Engine


def make_keys(folder: Path) -> tuple[Path, Path]:
    """A broker key folder with one allowed client in ``folder``: (keys_dir, client secret key file)."""
    from engine import keys as keytool

    keys_dir = folder / "keys"
    with contextlib.redirect_stdout(io.StringIO()):
        keytool.main(["init", "--keys-dir", str(keys_dir)])
        keytool.main(["new", "bench", "--dir", str(folder)])
        keytool.main(["allow", "--clients", str(folder / "bench.key"), "--keys-dir", str(keys_dir)])
    return keys_dir, folder / "bench.key_secret"


class EngineCurve(Engine):
    name = "engine_curve"
    label = "this engine with CurveZMQ (--secure)"

    def start(self) -> None:
        if self.broker:
            from .base import Skip

            raise Skip("engine_curve starts its own broker; it does not measure an existing deployment")
        self._tmp = Path(tempfile.mkdtemp(prefix="bench-curve-"))
        self._keys_dir, self._client_key = make_keys(self._tmp)
        super().start()

    def _extra_flags(self) -> list[str]:
        return ["--keys-dir", str(self._keys_dir), "--secure"]  # local workers get worker keys from here

    def _driver_options(self) -> dict:
        return {"key_file": str(self._client_key), "broker_key_file": str(self._keys_dir / "broker.key")}

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(getattr(self, "_tmp", ""), ignore_errors=True)

    def notes(self) -> list[str]:
        return [f"python -m engine.broker --local-workers {self.workers} --secure (CURVE on both sockets); "
                f"{self.clients} client process(es) with a client key"]
