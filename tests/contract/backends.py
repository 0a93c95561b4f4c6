"""The adapters each port's contract suite runs against.

Embedded adapters always run. Adapters of the real engines run when the engines
are up (``ops/engines.sh start``); in CI a missing engine is a failure, never a skip.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import in_ci

ENGINE_PORTS = {"kafka": 9092, "mongodb": 27017, "redis": 6379}


def engine_up(name: str) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", ENGINE_PORTS[name])) == 0


def require_engine(name: str) -> None:
    """Skip outside CI when an engine is down; fail in CI."""
    if engine_up(name):
        return
    message = f"{name} is not running on 127.0.0.1:{ENGINE_PORTS[name]}: start it with ops/engines.sh start"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def sqlite_url(tmp_path: Path, name: str) -> str:
    return f"sqlite:///{tmp_path}/{name}.db"
