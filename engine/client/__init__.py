"""The client role: ``Client`` (threads, futures) and ``AsyncClient`` (asyncio), one core."""
from .aio import AsyncClient
from .core import Result
from .sync import Client

__all__ = ["AsyncClient", "Client", "Result"]
