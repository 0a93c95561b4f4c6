"""Load generators: vegeta at constant rates (no coordinated omission), stepping to find a peak; wrk as a check."""

from __future__ import annotations

import base64
import csv
import io
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from bench.procs import ROOT, load_core, pinned

VEGETA = ROOT / ".engines" / "bin" / "vegeta"
COMMANDS: list[str] = []  # every load command run, for RESULTS.md


def record(argv: list[str]) -> None:
    COMMANDS.append(" ".join(str(a) for a in argv))


@dataclass
class Target:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def vegeta_json(self) -> bytes:
        out: dict = {"method": self.method, "url": self.url, "header": {k: [v] for k, v in self.headers.items()}}
        if self.body:
            out["body"] = base64.b64encode(self.body).decode()
        return orjson.dumps(out)


def write_targets(path: Path, targets: Iterable[Target]) -> Path:
    path.write_bytes(b"\n".join(t.vegeta_json() for t in targets) + b"\n")
    return path


@dataclass
class Result:
    """One request as vegeta recorded it."""

    start_ns: int
    code: int
    latency_ns: int
    error: str
    method: str
    url: str


@dataclass
class Stats:
    """The figures of one constant-rate step (or of one class of requests inside it)."""

    rate: float
    requests: int
    throughput: float
    success: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    codes: dict[str, int]
    errors: list[str]

    @property
    def error_rate(self) -> float:
        return 1.0 - self.success

    def dict(self) -> dict:
        return {**asdict(self), "error_rate": self.error_rate}


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


def summarise(results: list[Result], rate: float, span_s: float | None = None) -> Stats:
    ok = [r for r in results if 200 <= r.code < 400 and not r.error]
    lat = sorted(r.latency_ns / 1e6 for r in results)
    if span_s is None and results:
        first = min(r.start_ns for r in results)
        last = max(r.start_ns + r.latency_ns for r in results)
        span_s = max((last - first) / 1e9, 1e-9)
    codes: dict[str, int] = {}
    for r in results:
        codes[str(r.code)] = codes.get(str(r.code), 0) + 1
    errors = sorted({r.error for r in results if r.error})[:5]
    n = len(results)
    return Stats(
        rate=rate,
        requests=n,
        throughput=len(ok) / span_s if span_s else 0.0,
        success=len(ok) / n if n else 0.0,
        p50_ms=percentile(lat, 0.50),
        p95_ms=percentile(lat, 0.95),
        p99_ms=percentile(lat, 0.99),
        max_ms=lat[-1] if lat else float("nan"),
        mean_ms=sum(lat) / n if n else float("nan"),
        codes=codes,
        errors=errors,
    )


def attack(targets: Path, rate: float, duration_s: float, work: Path, name: str = "bench") -> list[Result]:
    """Run vegeta at a constant rate (requests/s) for a while; every request's result."""
    out = work / f"{name}-{int(rate)}.bin"
    argv = [
        str(VEGETA), "attack", f"-targets={targets}", "-format=json", f"-rate={max(1, round(rate))}/1s",
        f"-duration={duration_s}s", "-timeout=10s", "-keepalive=true", "-max-body=0", "-max-workers=2000",
        f"-name={name}", f"-output={out}",
    ]  # fmt: skip
    argv = pinned(argv, load_core())
    record(argv)
    subprocess.run(argv, check=True, env={**os.environ, "GOMAXPROCS": "1"}, stdout=subprocess.DEVNULL)
    encoded = subprocess.run(
        [str(VEGETA), "encode", "-to=csv", str(out)], check=True, capture_output=True
    ).stdout.decode()
    out.unlink(missing_ok=True)
    results = []
    for row in csv.reader(io.StringIO(encoded)):
        if len(row) < 11:
            continue
        results.append(Result(int(row[0]), int(row[1]), int(row[2]), row[5], row[9], row[10]))
    return results


Classifier = Callable[[Result], str]


def by_class(results: list[Result], classify: Classifier, rate: float) -> dict[str, Stats]:
    """Stats per class of request (e.g. sign-in apart from the rest), with the step's span."""
    if not results:
        return {}
    first = min(r.start_ns for r in results)
    last = max(r.start_ns + r.latency_ns for r in results)
    span = max((last - first) / 1e9, 1e-9)
    groups: dict[str, list[Result]] = {}
    for r in results:
        groups.setdefault(classify(r), []).append(r)
    return {k: summarise(v, rate * len(v) / len(results), span) for k, v in sorted(groups.items())}


def passed(s: Stats, p99_limit_ms: float) -> bool:
    """A step holds when it keeps up with the offered rate, almost without errors, at a sane p99."""
    return s.success >= 0.99 and s.throughput >= 0.95 * s.rate and s.p99_ms <= p99_limit_ms


TargetsFor = Callable[[float, float], Path]


def find_peak(
    targets: Path | TargetsFor,
    work: Path,
    name: str,
    *,
    start: float,
    step_s: float,
    max_rate: float = 40_000,
    refine: int = 2,
    p99_limit_ms: float = 1000.0,
    between: Callable[[], None] | None = None,
    judged: Callable[[list[Result]], list[Result]] | None = None,
) -> tuple[float, list[Stats]]:
    """Double the rate until a step fails, then bisect ``refine`` times; the best passing rate and every step."""

    def step(r: float) -> Stats:
        path = targets(r, step_s) if callable(targets) else targets
        results = attack(path, r, step_s, work, name)
        if judged is not None:
            kept = judged(results)
            return summarise(kept, r * len(kept) / max(1, len(results)))
        return summarise(results, r)

    curve: list[Stats] = []
    good, bad = 0.0, None
    rate = start
    while rate <= max_rate:
        s = step(rate)
        curve.append(s)
        if between:
            between()
        if passed(s, p99_limit_ms):
            good = rate
            rate *= 2
        else:
            bad = rate
            break
    for _ in range(refine if bad else 0):
        mid = (good + bad) / 2 if good else bad / 2
        s = step(mid)
        curve.append(s)
        if between:
            between()
        if passed(s, p99_limit_ms):
            good = mid
        else:
            bad = mid
    curve.sort(key=lambda s: s.rate)
    peak = max((s.throughput for s in curve if s.rate <= good), default=0.0) if good else 0.0
    return peak, curve


def wrk(url: str, duration_s: float, connections: int = 64) -> float | None:
    """Closed-loop requests/s from wrk (one thread on the load core), or None when wrk is missing."""
    if shutil.which("wrk") is None:
        return None
    argv = pinned(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s", url], load_core())
    record(argv)
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1)) if m else None
