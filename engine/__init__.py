"""Distributed image processing over ZeroMQ.

Roles: ``engine.broker`` (routes tasks), ``engine.worker`` (runs them in a process
pool), ``engine.client`` (submits them). ``engine.protocol`` is the wire format,
``engine.errors`` every exception, ``engine.ops`` the image operations.

``from engine import Client`` works; the client is imported on first use, so that
importing ``engine.ops`` in a worker does not pull in the client.
"""
__version__ = "0.1.0"

__all__ = ["AsyncClient", "Client", "Result", "__version__"]


def __getattr__(name: str):
    if name in ("AsyncClient", "Client", "Result"):
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
