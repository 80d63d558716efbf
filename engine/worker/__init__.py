"""The worker role: a supervisor with a pool of processes running pipelines."""
from .config import WorkerConfig
from .supervisor import Supervisor

__all__ = ["Supervisor", "WorkerConfig"]
