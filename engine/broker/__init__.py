"""The broker role: ``Broker`` routes tasks between clients and workers."""
from .config import BrokerConfig
from .core import Broker

__all__ = ["Broker", "BrokerConfig"]
