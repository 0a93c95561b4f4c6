"""Run SnapFix roles as real processes for end-to-end tests, and stop them however the test asks."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

SNAPFIX = str(Path(sys.executable).with_name("snapfix"))


def free_port() -> int:
    """A free port below the kernel's ephemeral range.

    A port from the ephemeral range (what binding port 0 hands out) may be taken by any
    outgoing connection (Kafka, Mongo and PostgreSQL clients open many) before the server
    binds it, or while a killed engine is down and about to be started again on the same
    port; ports below the range are only ever taken by a listener.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        port = random.randrange(max(low - 12_000, 1024), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


class Role:
    """One `snapfix <role>` process with its log file."""

    def __init__(self, role: str, env: dict[str, str], log: Path, port: int | None = None) -> None:
        self.role, self.env, self.log_path, self.port = role, env, log, port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout: float = 60.0) -> Role:
        args = [SNAPFIX, self.role] + (["--port", str(self.port)] if self.port else [])
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=log, start_new_session=True)
        if self.port:
            self._wait_ready(ready_timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.role} exited:\n{self.log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.role} not ready in {timeout}s:\n{self.log_path.read_text()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing, no goodbyes."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()


@contextmanager
def running(*roles: Role) -> Iterator[tuple[Role, ...]]:
    try:
        for role in roles:
            role.start()
        yield roles
    finally:
        for role in reversed(roles):
            role.stop()
