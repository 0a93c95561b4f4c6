"""Start and stop the servers a benchmark needs: free ports, fresh data directories, pinned cores."""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
# the same uvicorn flags `snapfix serve` passes (ops/cli.py): one worker, no access log, auto loop and parser
UVICORN_FLAGS = ("--workers", "1", "--no-access-log", "--log-level", "warning")

JWT_SECRET = secrets.token_urlsafe(48)  # this run's servers sign with it, and so does the bench for its crowd


def password_pool_env() -> dict[str, str]:
    """argon2 in one worker process pinned to the load core, when there is one."""
    core = load_core()
    pool = {"SNAPFIX_PASSWORD_POOL": "process", "SNAPFIX_PASSWORD_WORKERS": "1"}
    return pool if core is None else {**pool, "SNAPFIX_PASSWORD_CPUS": f"[{core}]"}


@functools.cache
def cores() -> list[int]:
    """The cores this run may use, read once before the harness pins itself to the load core."""
    return sorted(os.sched_getaffinity(0))


def pin_self_to_load_core() -> None:
    cores()
    core = load_core()
    if core is not None:
        os.sched_setaffinity(0, {core})


def server_core() -> int | None:
    """The core servers run on: the last one, when there are at least two."""
    cs = cores()
    return cs[-1] if len(cs) >= 2 else None


def load_core() -> int | None:
    """The core load generators and raw clients run on: the first one, when there are at least two."""
    cs = cores()
    return cs[0] if len(cs) >= 2 else None


def pinned(argv: list[str], core: int | None) -> list[str]:
    """``argv`` under ``taskset -c core`` when taskset exists and a core is given."""
    if core is None or shutil.which("taskset") is None:
        return argv
    return ["taskset", "-c", str(core), *argv]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Server:
    """A server process started by the harness (and only those are ever stopped by it)."""

    name: str
    argv: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/healthz"
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    cwd: Path = ROOT  # a role that writes to its working directory (faust's data dir) gets the run's own

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> tuple[int, ...]:
        """The server's process (``taskset`` execs it, so it keeps the pid), for CPU accounting."""
        return () if self.proc is None else (self.proc.pid,)

    def start(self, timeout: float = 60.0) -> Server:
        """Start on a port picked now (a port picked earlier may meanwhile be a load generator's)."""
        if self.port == 0 or port_open("127.0.0.1", self.port):
            self.port = free_port()
        self.argv = [a.replace("{port}", str(self.port)) if "{port}" in a else a for a in self.argv]
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.argv,
            env={**os.environ, **self.env},
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.base + self.ready_path, timeout=1) as r:  # noqa: S310
                    if r.status < 500:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer {self.ready_path} within {timeout}s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def uvicorn_server(name: str, app: str, env: dict[str, str], logs: Path, *, factory: bool = False) -> Server:
    """A bench ASGI app under uvicorn with the same flags as ``snapfix serve``, on the server core."""
    port = 0
    argv = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "{port}", *UVICORN_FLAGS]
    if factory:
        argv.append("--factory")
    return Server(name, pinned(argv, server_core()), port, env, "/healthz", logs / f"{name}.log")


def snapfix_server(name: str, settings_env: dict[str, str], logs: Path, role: str = "serve") -> Server:
    """``snapfix serve`` (or another role) with the given SNAPFIX_* settings, on the server core."""
    port = 0
    argv = [str(VENV_BIN / "snapfix"), role, "--host", "127.0.0.1", "--port", "{port}"]
    env = {"SNAPFIX_LOG_LEVEL": "warning", "SNAPFIX_ENVIRONMENT": "test", **settings_env}
    return Server(name, pinned(argv, server_core()), port, env, "/healthz", logs / f"{name}.log")
