"""The event loop's lag: how late a timer fires, which is how long any ready request waited for the loop.

Every request of a process shares one event loop: a handler that computes for 20 ms without
awaiting delays all others by 20 ms. The monitor sleeps a short interval again and again and
records how much later than asked it woke (``snapfix_event_loop_lag_seconds``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time

from prometheus_client import Histogram

LOOP_LAG = Histogram(
    "snapfix_event_loop_lag_seconds",
    "How much later than scheduled the event loop ran a timer (sampled every interval)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
INTERVAL_S = 0.02


async def monitor(stop: asyncio.Event, interval_s: float = INTERVAL_S) -> None:
    """Observe the loop's lag until ``stop`` is set."""
    while not stop.is_set():
        asked = time.perf_counter()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
        LOOP_LAG.observe(max(0.0, time.perf_counter() - asked - interval_s))


def settle_heap() -> None:
    """Keep the garbage collector off the request path once a process has started.

    A full collection walks every tracked object while it holds the loop: 30 to 60 ms of CPU
    measured in a serving process, and more on the clock when the process's own threads (SQLite's)
    share the core meanwhile; CPython starts one whenever allocation counts say so, under load
    several a minute. So what start-up made and will never free (modules, functions, classes) is
    frozen out of the walks, young passes run less often, and full passes run on a timer
    (``full_collections``) instead: a bounded pause once a minute, not whenever.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


GC_THRESHOLDS = (20_000, 20, 1_000_000_000)  # CPython's (700, 10, 10); the last one: no full pass by count
FULL_COLLECTION_EVERY_S = 60.0


async def full_collections(stop: asyncio.Event, every_s: float = FULL_COLLECTION_EVERY_S) -> None:
    """The full collections ``settle_heap`` took off the allocation counts, on a timer until ``stop``."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
        gc.collect()
