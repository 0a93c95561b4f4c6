"""Passwords: argon2id in a bounded pool of its own, so hashing never slows the rest of the API.

argon2 is deliberately costly (tens of milliseconds of CPU). Run on the event loop's core it
would delay every other request; queued without bound, a burst of sign-ins would delay them
for seconds. So hashes run in a pool of ``workers`` threads, or processes that may be pinned
to cores of their own (``cpus``), and at most ``queue`` more wait: past that a request is
refused at once with ``PasswordsBusy`` (the API answers 503 with ``Retry-After``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

T = TypeVar("T")
Pool = Literal["thread", "process"]


class PasswordsBusy(Exception):
    """Every password worker is busy and the queue is full: try again shortly."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__("too many sign-ins and registrations at once; try again shortly")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Argon2Parameters:
    """argon2id's costs; the defaults are the OWASP Password Storage Cheat Sheet's (m = 19 MiB, t = 2, p = 1)."""

    time_cost: int = 2
    memory_kib: int = 19 * 1024
    parallelism: int = 1

    def hasher(self) -> PasswordHasher:
        return PasswordHasher(time_cost=self.time_cost, memory_cost=self.memory_kib, parallelism=self.parallelism)


@dataclass(frozen=True, slots=True)
class Verified:
    """A password check: whether it matched, and a new hash when the stored one used other parameters."""

    ok: bool
    rehashed: str | None = None


# --- what a worker runs (module level, so a process pool can pickle it) ------------------------------------

_WORKER_HASHER: PasswordHasher | None = None


def _start_worker(parameters: Argon2Parameters, cpus: Sequence[int]) -> None:
    global _WORKER_HASHER
    _WORKER_HASHER = parameters.hasher()
    if cpus:
        os.sched_setaffinity(0, cpus)


def _hash(parameters: Argon2Parameters, password: str) -> str:
    return (_WORKER_HASHER or parameters.hasher()).hash(password)


def _verify(parameters: Argon2Parameters, password_hash: str, password: str, known: bool) -> Verified:
    hasher = _WORKER_HASHER or parameters.hasher()
    try:
        hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return Verified(False)
    if not known:
        return Verified(False)
    return Verified(True, hasher.hash(password) if hasher.check_needs_rehash(password_hash) else None)


class Passwords:
    """argon2id hashing and checking in a bounded pool (see the module docstring)."""

    def __init__(
        self,
        hasher: PasswordHasher | None = None,
        *,
        parameters: Argon2Parameters | None = None,
        workers: int = 1,
        queue: int = 16,
        pool: Pool = "thread",
        cpus: Sequence[int] = (),
    ) -> None:
        if parameters is None:
            parameters = (
                Argon2Parameters(hasher.time_cost, hasher.memory_cost, hasher.parallelism)
                if hasher is not None
                else Argon2Parameters()
            )
        self.parameters = parameters
        self._limit = workers + queue
        self._busy = 0
        self._executor: concurrent.futures.Executor
        if pool == "process":
            self._executor = concurrent.futures.ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context("spawn"),  # never fork a process with threads and a loop
                initializer=_start_worker,
                initargs=(parameters, tuple(cpus)),
            )
        else:
            self._executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="argon2")
        self._dummy = parameters.hasher().hash("timing-equaliser")

    async def hash(self, password: str) -> str:
        return await self._run(_hash, self.parameters, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Check a password; with no hash, still spend the same time so unknown emails don't show."""
        return (await self.check(password_hash, password)).ok

    async def check(self, password_hash: str | None, password: str) -> Verified:
        """Like ``verify``, and a new hash when the stored one was made with other parameters."""
        known = password_hash is not None
        return await self._run(_verify, self.parameters, password_hash or self._dummy, password, known)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._busy >= self._limit:
            raise PasswordsBusy(retry_after_s=1)  # a hash takes tens of milliseconds: the queue drains within it
        self._busy += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self._busy -= 1
