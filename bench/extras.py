"""The run's measurements outside HTTP: browse shapes at city scale, full rebuilds, the command path, export.

Each function measures one thing with the modules that also run standalone
(``bench.query_bench``, ``bench.command_path``, ``bench.export_bench``) and returns plain
data for ``bench/results.json``; ``markdown`` renders them for ``bench/RESULTS.md``.
"""

from __future__ import annotations

import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import command_path, export_bench, query_bench
from bench.procs import ROOT, free_port, port_open
from events.sqlite_log import SqliteEventLog
from ops.rebuild import rebuild
from projectors.catalog import ALL
from projectors.ports import Query, ViewStore

BROWSE_TARGET_P95_MS = 20.0


async def queries(store: ViewStore, issues: int, repeat: int) -> dict[str, Any]:
    """Seed ``issues`` through the projector, then time every documented browse shape, uncached."""
    seconds = await query_bench.seed(store, issues, max(10, issues // 10))  # type: ignore[arg-type]
    shapes = await query_bench.measure(store, repeat, 20)  # type: ignore[arg-type]
    return _shapes_result(issues, repeat, seconds, shapes)


def _shapes_result(issues: int, repeat: int, seconds: float, shapes: list[tuple[str, list[float], int]]) -> dict:
    return {
        "issues": issues,
        "repeat": repeat,
        "limit": 20,
        "seed_seconds": seconds,
        "shapes": [
            {
                "shape": name,
                "p50_ms": statistics.median(times),
                "p95_ms": query_bench.pct(times, 0.95),
                "p99_ms": query_bench.pct(times, 0.99),
                "rows": rows,
            }
            for name, times, rows in shapes
        ],
    }


@contextmanager
def stock_ferretdb(pg_url: str) -> Iterator[str]:
    """A second FerretDB on the same PostgreSQL database with the ordered pushdown off: the same data, read the
    way stock FerretDB 1.24 reads it. Yields its MongoDB URL (no database)."""
    port = free_port()
    binary = ROOT / ".engines" / "bin" / "ferretdb"
    argv = [str(binary), "--listen-addr", f"127.0.0.1:{port}", "--handler", "postgresql",
            "--postgresql-url", pg_url, "--ordered-pushdown=false", "--log-level", "warn"]  # fmt: skip
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not port_open("127.0.0.1", port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the stock-pushdown FerretDB did not start: {' '.join(argv)}")
            time.sleep(0.1)
        yield f"mongodb://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(10)


async def ferretdb_queries(
    mongo_url: str, pg_url: str, issues: int, repeat: int, say: Callable[[str], None]
) -> dict[str, Any]:
    """Browse shapes on FerretDB with SnapFix's ordered pushdown and, side by side on the same seeded database,
    through a second FerretDB without it (stock 1.24 pushdown); the pages of the two must be the same."""
    from projectors.mongo_views import MongoViewStore
    from projectors.runner import ProjectionRunner

    db = f"bench_city_{uuid.uuid4().hex[:8]}"
    ordered = MongoViewStore(mongo_url.rstrip("/") + "/" + db)
    try:
        say(f"browse shapes on FerretDB: seeding {issues:,} issues through the projector")
        seconds = await query_bench.seed(ordered, issues, max(10, issues // 10))  # type: ignore[arg-type]
        docs = await ordered.find(Query("issue_summary", limit=5000))
        ordered_pages: list[list[str]] = []
        say("browse shapes on FerretDB with the ordered pushdown")
        fast = await query_bench.measure(ordered, repeat, 20, docs=docs, pages=ordered_pages)  # type: ignore[arg-type]
        stock_pages: list[list[str]] = []
        with stock_ferretdb(pg_url) as stock_url:
            stock = MongoViewStore(stock_url + db)
            await ProjectionRunner("main", ALL, None, stock).setup()  # declares the collections to this client
            say("the same shapes through a FerretDB with stock pushdown (slow: it sorts every match itself)")
            slow = await query_bench.measure(stock, repeat, 20, docs=docs, pages=stock_pages)  # type: ignore[arg-type]
            await stock.close()
        differ = sum(a != b for a, b in zip(ordered_pages, stock_pages, strict=True))
        result = _shapes_result(issues, repeat, seconds, fast)
        result.update(pages_compared=len(ordered_pages), pages_differing=differ)
        return {
            "mongodb (FerretDB)": result,
            "mongodb (FerretDB, stock pushdown)": _shapes_result(issues, repeat, seconds, slow),
        }
    finally:
        await ordered._client.drop_database(db)  # the bench's own throw-away database
        await ordered.close()


async def rebuilds(log_path: Path, store: ViewStore, leader: str, say: Callable[[str], None]) -> dict[str, Any]:
    """The time of a full ``snapfix rebuild`` of each view, beside a live projector ``leader`` that is level."""
    log = SqliteEventLog(f"sqlite:///{log_path}")
    await log.open()
    out: dict[str, Any] = {}
    try:
        for projection in ALL:
            say(f"rebuild {projection.name}")
            started = time.perf_counter()
            result = await rebuild(projection, log, store, leader=leader, grace_s=0.0)
            seconds = time.perf_counter() - started
            out[projection.name] = {"seconds": seconds, "events": result.events,
                                    "events_per_s": result.events / seconds if seconds else None}  # fmt: skip
    finally:
        await log.close()
    return out


async def command_paths(appends: int) -> list[dict[str, Any]]:
    """Appends with the write store (consistency on) and publishing alone (off), on Kafka and FerretDB."""
    rows = await command_path.run(appends)
    return [
        {
            "path": r.path,
            "concurrency": r.concurrency,
            "appends": r.appends,
            "per_s": r.throughput,
            "p50_ms": statistics.median(r.latencies_ms),
            "p99_ms": r.quantile(0.99),
        }
        for r in rows
    ]


async def sqlite_export(folder: Path, events: int) -> dict[str, Any]:
    """Export a generated SQLite log as JSON Lines (upcast, raw) and Parquet, beside a bare read."""
    db = folder / f"export-{uuid.uuid4().hex[:6]}.db"
    generate_s = export_bench.generate(db, events)
    bare_s = export_bench.ceiling(db)
    out: dict[str, Any] = {"events": events, "generate_s": generate_s, "ceiling_per_s": events / bare_s, "formats": {}}
    for label, parquet, raw in (("jsonl", False, False), ("jsonl --raw", False, True), ("parquet", True, False)):
        target = folder / f"export.{'parquet' if parquet else 'jsonl'}"
        seconds = await export_bench.timed(db, target, parquet, raw)
        out["formats"][label] = {"per_s": events / seconds, "seconds": seconds, "bytes": target.stat().st_size,
                                 "ratio": bare_s / seconds}  # fmt: skip
        target.unlink()
    db.unlink()
    return out


async def kafka_export(bootstrap: str, events: int, folder: Path) -> dict[str, Any]:
    """The same figures for a Kafka topic: the ``snapfix export`` process (start-up included) against a bare drain."""
    k = await export_bench.kafka_export_bench(bootstrap, events, folder, partitions=6)
    return {
        "events": events,
        "produce_per_s": k["produce_events_per_s"],
        "ceiling_per_s": k["drain_events_per_s"],
        "formats": {
            label: {
                "per_s": k[f"export_{label}_events_per_s"],
                "seconds": k[f"export_{label}_seconds"],
                "bytes": k[f"export_{label}_mb"] * 1e6,
                "ratio": k[f"export_{label}_of_ceiling"],
            }
            for label in ("jsonl", "parquet")
        },
    }


def _compared(q: dict[str, Any]) -> str:
    if "pages_compared" not in q:
        return ""
    return (f" Side by side, on the same database, a second FerretDB without the ordered pushdown answered the same"
            f" queries (next table): {q['pages_differing']} of {q['pages_compared']} pages differed.")  # fmt: skip


def markdown(results: dict[str, Any]) -> str:
    """The sections of RESULTS.md for what this module measured (empty when nothing was)."""
    parts: list[str] = []
    for store, q in results.get("queries", {}).items():
        target = " (target p95 < 20 ms on the embedded store)" if store == "sqlite" else ""
        parts.append(
            f"### Uncached browse queries, {store}, {q['issues']:,} issues{target}\n\n"
            f"Seeded through the projector in {q['seed_seconds']:.0f} s; {q['repeat']} runs per shape, "
            f"page {q['limit']}.{_compared(q)}\n\n"
            "| shape | p50 ms | p95 ms | p99 ms | rows |\n|---|---:|---:|---:|---:|\n"
            + "\n".join(
                f"| {s['shape']} | {s['p50_ms']:.2f} | {s['p95_ms']:.2f} | {s['p99_ms']:.2f} | {s['rows']} |"
                + (" **over 20 ms**" if store == "sqlite" and s["p95_ms"] >= BROWSE_TARGET_P95_MS else "")
                for s in q["shapes"]
            )
        )
    if rb := results.get("rebuilds"):
        parts.append(
            f"### Full rebuild of each view (`snapfix rebuild`, SQLite log of {rb['log_events']:,} events)\n\n"
            "| view | seconds | events/s |\n|---|---:|---:|\n"
            + "\n".join(
                f"| {name} | {r['seconds']:.1f} | {r['events_per_s'] or 0:,.0f} |" for name, r in rb["views"].items()
            )
        )
    if cp := results.get("command_path"):
        parts.append(
            "### Command path: consistency on (write store) and off (publish alone), Kafka + FerretDB\n\n"
            "| path | concurrency | appends | appends/s | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|---:|\n"
            + "\n".join(
                f"| {r['path']} | {r['concurrency']} | {r['appends']} | {r['per_s']:,.0f} | {r['p50_ms']:.2f} "
                f"| {r['p99_ms']:.2f} |"
                for r in cp
            )
        )
    for source, ex in results.get("export", {}).items():
        parts.append(
            f"### Export of a {ex['events']:,}-event {source} log (`snapfix export`)\n\n"
            f"Ceiling: a bare read of the same log, {ex['ceiling_per_s']:,.0f} events/s.\n\n"
            "| format | events/s | seconds | MB | of the ceiling |\n|---|---:|---:|---:|---:|\n"
            + "\n".join(
                f"| {label} | {f['per_s']:,.0f} | {f['seconds']:.1f} | {f['bytes'] / 1e6:,.0f} | {f['ratio']:.0%} |"
                for label, f in ex["formats"].items()
            )
        )
    return "\n\n".join(parts)
