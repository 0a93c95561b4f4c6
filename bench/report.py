"""RESULTS.md and the plots, from the results dictionary the harness collected."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

TARGETS_TEXT = {
    "cached_read": "≥ 0.5 × bare ASGI",
    "create_issue": "≥ 0.4 × FastAPI constant POST; p99 < 50 ms at half peak",
    "upvote": "≥ 0.4 × FastAPI constant POST; p99 < 50 ms at half peak",
    "upvote_hot": "≥ 0.4 × FastAPI constant POST; within 1.5× of `upvote`",
}


def phase_extras(mix: dict[str, Any]) -> list[str]:
    """Per phase: the event loop's lag on each role, the cores the server and its argon2 pool used."""
    rows = []
    for ph in mix.get("phases", []):
        lags = ph.get("loop_lag") or {}
        lag = "; ".join(f"{_n((v or {}).get('p99_le_ms'), 1)}" for v in lags.values()) or "–"
        cores = ph.get("cores") or []
        server = sum(c.get("server", 0) for c in cores) if cores else None
        pool = sum(c.get("pool", 0) for c in cores) if cores else None
        rows.append(f"| {ph['phase']} | {_n(ph.get('throughput'))} | {lag} | {_n(server, 2)} | {_n(pool, 2)} |")
    if not rows:
        return []
    return [
        "\nEvent-loop lag (p99, the upper bound of its histogram bucket; target < 10 ms) and the cores used "
        "(CPU seconds per second: the server processes, and apart their argon2 process pool on the load core):\n",
        "| phase | req/s | loop lag p99 ≤ (ms), per role | server cores | argon2 pool cores |",
        "| --- | ---: | --- | ---: | ---: |",
        *rows,
    ]


def follow_location_line(mix: dict[str, Any]) -> list[str]:
    """The reads of a 201's Location during the peak phase: how many found nothing."""
    located = next((p["follow_location"] for p in mix.get("phases", []) if p.get("follow_location")), None)
    if not located:
        return []
    return [
        f"\n**Reads of a 201's `Location`** during the peak phase ({located['how']}): {located['samples']} reads, "
        f"**{located['not_found']} answered 404** (target 0); statuses {located['statuses']}; the GET's p50 "
        f"{_n(located['get_p50_ms'], 1)} ms, p99 {_n(located['get_p99_ms'], 1)} ms (it waits for the views).\n"
    ]


def _n(x: Any, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{digits}f}"


def _verdict(path: str, entry: dict[str, Any]) -> str:
    target = entry.get("target_ratio")
    ratio = entry.get("ratio")
    if target is None or ratio is None:
        return ""
    ok = ratio >= target
    half = entry.get("at_half_peak") or {}
    if path in ("create_issue", "upvote") and half:
        ok = ok and half.get("p99_ms", 1e9) < 50
    return "met" if ok else "**missed**"


def plots(results: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    names = []
    series = {**{f"ceiling: {k}": v for k, v in results["ceilings"].items() if "curve" in v},
              **{k: v for k, v in results["paths"].items() if "curve" in v}}  # fmt: skip
    if series:
        cols = 3
        rows = math.ceil(len(series) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
        for ax, (name, entry) in zip(axes.flat, series.items(), strict=False):
            curve = entry["curve"]
            rates = [c["rate"] for c in curve]
            for key, style in (("p50_ms", "o-"), ("p95_ms", "s--"), ("p99_ms", "^-")):
                ax.plot(rates, [c[key] for c in curve], style, label=key.replace("_ms", ""))
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(name, fontsize=10)
            ax.set_xlabel("offered load (req/s, vegeta constant rate)")
            ax.set_ylabel("latency (ms)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(series) :]:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(out / "latency_vs_load.png", dpi=90)
        plt.close(fig)
        names.append("latency_vs_load.png")
    for key, mix, title in (
        ("mix_latency_vs_load.png", results.get("mix", {}), "original design's mix, embedded deployment"),
        ("distributed_mix_latency_vs_load.png", results.get("distributed", {}).get("mix", {}),
         "original design's mix, distributed deployment (command API, query API, projectors on one core)"),
    ):  # fmt: skip
        if mix.get("calibration"):
            _mix_plot(plt, mix, title, out / key)
            names.append(key)
    proj = results.get("projector", {})
    if proj:
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, entry in proj.items():
            if entry.get("series"):
                ax.plot([s[0] for s in entry["series"]], [s[1] for s in entry["series"]], label=name)
                ax.axhline(entry["ceiling_eps"], ls=":", alpha=0.5)
        ax.set_xlabel("seconds since catch-up started")
        ax.set_ylabel("events/s")
        ax.set_yscale("log")
        ax.set_title("projector catch-up throughput (dotted: its ceiling)")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "projector_throughput.png", dpi=90)
        plt.close(fig)
        names.append("projector_throughput.png")
    return names


def _mix_plot(plt: Any, mix: dict[str, Any], title: str, path: Path) -> None:
    """Latency against offered load: the capacity steps as lines, the phases' p99 as crosses."""
    fig, ax = plt.subplots(figsize=(7, 4))
    cal = sorted(mix["calibration"], key=lambda c: c["rate"])
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        ax.plot([c["rate"] for c in cal], [c[key] for c in cal], "o-", label=f"{key.replace('_ms', '')} (steps)")
    phases = mix.get("phases", [])
    if phases:
        ax.plot([p["rate"] for p in phases], [p["p99_ms"] for p in phases], "kx", label="p99 (phases, argon2 included)")
    ax.axhline(100, color="red", ls=":", label="100 ms target")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (req/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def _ratios(r: dict[str, Any] | None, overall: float | None = None) -> str:
    """Overall, views and browse hit ratios as table cells (results from before the split give only overall)."""
    r = r or {"overall": overall}
    return f"{_pct(r.get('overall'))} | {_pct(r.get('views'))} | {_pct(r.get('browse'))}"


def _both(results: dict[str, Any]) -> list[str]:
    """The distributed deployment's figures beside the embedded ones."""
    d = results.get("distributed") or {}
    if not d.get("paths") and not d.get("mix"):
        return []
    L: list[str] = []
    a = L.append
    mix, dmix = results.get("mix") or {}, d.get("mix") or {}
    a("## Both deployments side by side\n")
    a("Embedded: `snapfix serve` (SQLite log and views, in-process cache and projector). Distributed: "
      "`snapfix command-api`, `snapfix query-api` and `snapfix projectors` as three processes over Kafka, FerretDB "
      "(on PostgreSQL) and Redis, with a fresh topic, databases and Redis database. Both get **one server core** "
      "(taskset); the engines are shared and unpinned, so the distributed deployment also uses CPU outside that "
      "core. Writes go to the command API and reads (GETs, health checks included) to the query API, as a load "
      "balancer splitting the shared paths by method would. Every command costs four or five FerretDB round "
      "trips (commit slot, outbox entry, publish mark, outbox delete), and FerretDB v1 decodes every document it "
      "reads (about 150 µs a nested field), so the distributed figures are expected to be far lower on this "
      "machine; a production MongoDB and more cores are what the capacity model scales to.\n")  # fmt: skip
    meta = d.get("meta") or {}
    if meta:
        a(f"- command API: `{meta['command_api']}`; query API: `{meta['query_api']}`; projectors: "
          f"`{meta['projectors']}`")  # fmt: skip
        a("- with " + ", ".join(f"`{k}={v}`" for k, v in meta["env"].items()))
    setup = d.get("setup") or {}
    if setup:
        a(f"- set-up: {setup['users']} users registered and signed in, {setup['issues']} issues reported through "
          f"the command API in {setup['seconds']:.0f} s; {d.get('seconds', 0) / 60:.1f} min in all\n")  # fmt: skip
    a("### Paths\n")
    a("Peak and latencies at half the peak as in the table above; ratios against the ceilings of the same run.\n")
    a("| path | deployment | peak req/s | wrk req/s | ceiling | ratio | p50 | p95 | p99 | max (ms) | errors |")
    a("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for path in ("cached_read", "browse"):
        for label, e in (("embedded", results["paths"].get(path)), ("distributed", d.get("paths", {}).get(path))):
            if not e:
                continue
            h = e.get("at_half_peak") or {}
            a(f"| {path} | {label} | {_n(e['peak_rps'])} | {_n(e.get('wrk_rps'))} | {e.get('ceiling', '')} | "
              f"{_n(e.get('ratio'), 2)} | {_n(h.get('p50_ms'), 1)} | {_n(h.get('p95_ms'), 1)} | "
              f"{_n(h.get('p99_ms'), 1)} | {_n(h.get('max_ms'), 1)} | {h.get('error_rate', 0):.2%} |")  # fmt: skip
    if d.get("paths"):
        a("\nEvery distributed step:\n")
        a("| path | offered | achieved | p50 | p95 | p99 | max (ms) | errors |")
        a("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, e in d["paths"].items():
            for s in e.get("curve", []):
                a(_stats_row(name, s))
    if dmix:
        a("\n### The mix's phases\n")
        a(f"Capacity at p99 ≤ 100 ms (argon2 requests judged apart): embedded **{_n(mix.get('capacity_rps'))} "
          f"req/s**, distributed **{_n(dmix.get('capacity_rps'))} req/s**; each deployment's phases are fractions "
          "of its own capacity.\n")  # fmt: skip
        a("| phase | embedded offered | achieved | p50 | p99 | errors | distributed offered | achieved | p50 | p99 "
          "| errors |")  # fmt: skip
        a("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        emb = {p["phase"]: p for p in mix.get("phases", [])}
        for ph in dmix.get("phases", []):
            e = emb.get(ph["phase"])
            left = (f"{_n(e['rate'])} | {_n(e['throughput'])} | {_n(e['p50_ms'], 1)} | {_n(e['p99_ms'], 1)} | "
                    f"{e['error_rate']:.2%}") if e else "– | – | – | – | –"  # fmt: skip
            a(
                f"| {ph['phase']} ({ph['fraction']:.0%}, {ph['seconds']}s) | {left} | {_n(ph['rate'])} | "
                f"{_n(ph['throughput'])} | {_n(ph['p50_ms'], 1)} | {_n(ph['p99_ms'], 1)} | {ph['error_rate']:.2%} |"
            )
        a("\nDistributed capacity steps:\n")
        a("| step | offered | achieved | p50 | p95 | p99 | max (ms) | errors |")
        a("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for s in dmix.get("calibration", []):
            a(_stats_row("mix (argon2 apart)", s))
        if extras_rows := phase_extras(dmix):
            a("\nDistributed (the loop lag of the command API; the query API; server cores are all three roles'):")
            L.extend(extras_rows)
        L.extend(follow_location_line(dmix))
        sus = next((p for p in dmix.get("phases", []) if p["phase"] == "sustained"), None)
        if sus:
            a("\nDistributed, per request class in the sustained phase:\n")
            a("| class | offered | achieved | p50 | p95 | p99 | max (ms) | errors |")
            a("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for k, s in sus["classes"].items():
                a(_stats_row(k, s))
        a("\n### Freshness\n")
        a("A command's 2xx (at the command API, distributed) until `GET /v1/issues/{id}` answers 200 (at the query "
          "API). Targets: p99 < 50 ms embedded, < 250 ms distributed.\n")  # fmt: skip
        a("| deployment | when | samples | failures | p50 (ms) | p99 (ms) | max (ms) | target p99 | verdict |")
        a("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for label, m, target in (("embedded", mix, 50), ("distributed", dmix, 250)):
            sus = next((p for p in m.get("phases", []) if p["phase"] == "sustained"), None) or {}
            for when, f in (("idle", m.get("freshness_idle")), ("sustained phase", sus.get("freshness"))):
                if f:
                    ok = f["samples"] and not f["failures"] and f["p99_ms"] < target
                    a(f"| {label} | {when} | {f['samples']} | {f['failures']} | {_n(f['p50_ms'], 1)} | "
                      f"{_n(f['p99_ms'], 1)} | {_n(f['max_ms'], 1)} | {target} ms | "
                      f"{'met' if ok else '**missed**'} |")  # fmt: skip
    a("\n### Cache hit ratios\n")
    a("From `snapfix_cache_lookups_total{cache,result}` on the query side's `/metrics` (the one process, embedded; "
      "the query API, distributed), read before and after each phase. `views`: detail and profile reads; "
      "`browse`: first pages of browse queries. Target > 90 % overall. The sustained phase also carries the "
      "freshness probe, whose polls of issues not yet projected are misses by construction (each sample polls "
      "every 2 ms until its issue shows), so the whole mix's ratio is summed over the other phases; the last row "
      "counts everything.\n")  # fmt: skip
    a("| phase | embedded overall | views | browse | distributed overall | views | browse |")
    a("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    emb = {p["phase"]: p for p in mix.get("phases", [])}
    for ph in dmix.get("phases", []) or mix.get("phases", []):
        e = emb.get(ph["phase"]) or {}
        mark = " (with the freshness probe)" if ph.get("freshness") else ""
        a(f"| {ph['phase']}{mark} | {_ratios(e.get('cache_hit_ratios'), e.get('cache_hit_ratio'))} | "
          f"{_ratios(ph.get('cache_hit_ratios'))} |")  # fmt: skip
    a(f"| **whole mix** (sustained phase left out) | {_ratios(mix.get('cache_hit_ratios'))} | "
      f"{_ratios(dmix.get('cache_hit_ratios'))} |")  # fmt: skip
    a(f"| everything, probe included | {_ratios(mix.get('cache_hit_ratios_with_probe'))} | "
      f"{_ratios(dmix.get('cache_hit_ratios_with_probe'))} |\n")  # fmt: skip
    return L


# where each step of ``Profile.estimate`` starts on the run's timeline (the first line starting so)
STEP_MARKS = (
    ("embedded set-up", "embedded server on"),
    ("embedded paths and ceilings (9 peaks)", "bare_asgi_get: stepping"),
    ("embedded mix (capacity, phases)", "embedded: freshness probe"),
    ("distributed set-up", "distributed: command API"),
    ("distributed paths (2 peaks)", "distributed_cached_read: stepping"),
    ("distributed mix (capacity, phases)", "distributed: freshness probe"),
    ("engine ceilings", "raw SQLite upsert"),
    ("projector catch-up", "pre-filling a SQLite log"),
    ("full rebuild of each view", "a full rebuild of each view"),
    ("browse shapes on a seeded city", "browse shapes on a city"),
    ("command path", "command path:"),
    ("export (SQLite and Kafka logs)", "export of a"),
)


def _durations(results: dict[str, Any]) -> list[str]:
    """Each step's estimated and measured minutes, so the next estimate can be checked against this run."""
    meta, timeline = results["meta"], results.get("timeline") or []
    estimate = meta.get("estimate_s") or {}
    starts = {step: next((t for t, text in timeline if text.startswith(mark)), None) for step, mark in STEP_MARKS}
    known = sorted(t for t in starts.values() if t is not None)
    if not estimate or not known:
        return []
    L = ["| step | estimated (min) | took (min) |", "| --- | ---: | ---: |"]
    for step, _ in STEP_MARKS:
        t = starts[step]
        end = next((u for u in known if t is not None and u > t), meta.get("seconds"))
        took = (end - t) / 60 if t is not None and end is not None else None
        L.append(f"| {step} | {_n(estimate.get(step, 0) / 60, 1)} | {_n(took, 1)} |")
    L.append(f"| **all** | {_n(sum(estimate.values()) / 60, 1)} | {_n(meta.get('seconds', 0) / 60, 1)} |\n")
    return L


def _stats_row(label: str, s: dict[str, Any]) -> str:
    return (f"| {label} | {_n(s['rate'])} | {_n(s['throughput'])} | {_n(s['p50_ms'], 1)} | {_n(s['p95_ms'], 1)} "
            f"| {_n(s['p99_ms'], 1)} | {_n(s['max_ms'], 1)} | {s['error_rate']:.2%} |")  # fmt: skip


def write(results: dict[str, Any], bench: Path) -> None:
    images = plots(results, bench / "plots")
    meta, m = results["meta"], results["meta"]["machine"]
    L: list[str] = []
    a = L.append
    a("# SnapFix benchmark results\n")
    a(f"Run `bench/run{' --quick' if meta['quick'] else ''}` started {meta['started']}, took "
      f"{meta.get('seconds', 0) / 60:.1f} min. Figures are only meaningful as ratios to the ceilings measured in "
      "the same run; absolute numbers are one small machine's.\n")  # fmt: skip
    busy = m["load_before"][0]  # the load after includes the bench's own servers and clients
    if busy > 0.5 * (m["cores"] or 1) or results.get("busy_note"):
        a(f"> **The machine was busy with other work during this run** (load average {m['load_before'][0]:.2f} "
          f"before, {meta.get('load_after', (0,))[0]:.2f} after, on {m['cores']} cores: other engineers' test "
          "suites and engines share it). Expect the absolute figures to be low and noisy; the ratios, measured "
          "minutes apart, carry some of that noise too.\n")  # fmt: skip
    durations = _durations(results)
    if durations:
        a("Duration of each step, against the estimate printed at the start (`Profile.estimate`):\n")
        L.extend(durations)
    a("## Machine\n")
    a(f"- CPU: {m['cpu']}, {m['cores']} cores; memory {m['memory_gib']} GiB; kernel {m['kernel']}; {m['os']}")
    a(f"- Python {m['python']}; " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()))
    a("- tools: " + "; ".join(f"{k} {v}" for k, v in m["tools"].items()))
    a(f"- pinning: {m['pinning']}")
    a(
        f"- server under test: `{meta['server']['argv']}` with "
        + ", ".join(f"`{k}={v}`" for k, v in meta["server"]["env"].items())
        + " (a fresh temporary data directory)"
    )
    a(
        f"- set-up: {results.get('setup', {}).get('users')} users registered and signed in, "
        f"{results.get('setup', {}).get('issues')} issues reported before measuring\n"
    )
    a("## HTTP paths against their ceilings\n")
    a("Peak = the highest vegeta constant rate (doubling, then bisecting) at which throughput kept ≥ 95 % of the "
      "offered rate with ≥ 99 % success and p99 ≤ 1 s. Latencies are at **half the peak** (not at saturation). "
      "wrk (1 thread, 64 connections, closed loop) measures the GETs too; where both a path and its ceiling "
      "have a wrk figure, the ratio is wrk's (one vegeta process on one core tops out near 10k req/s, below the "
      "bare ASGI ceiling), otherwise vegeta's.\n")  # fmt: skip
    a(
        "| path | peak req/s | ceiling | ceiling req/s | ratio | target | verdict | p50 | p95 | p99 | max (ms) | "
        "errors | vegeta ratio | wrk ratio |"
    )
    a("| --- | ---: | --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, e in results["paths"].items():
        if "curve" not in e:
            continue
        h = e.get("at_half_peak") or {}
        a(f"| {name} | {_n(e['peak_rps'])} | {e.get('ceiling', '')} | {_n(e.get('ceiling_rps'))} | "
          f"{_n(e.get('ratio'), 2)} | {TARGETS_TEXT.get(name, '')} | {_verdict(name, e)} | {_n(h.get('p50_ms'), 1)} "
          f"| {_n(h.get('p95_ms'), 1)} | {_n(h.get('p99_ms'), 1)} | {_n(h.get('max_ms'), 1)} | "
          f"{h.get('error_rate', 0):.2%} | {_n(e.get('vegeta_ratio'), 2)} | {_n(e.get('wrk_ratio'), 2)} |")  # fmt: skip
    a("\n| ceiling | peak req/s | wrk req/s | p50 | p99 at half peak (ms) |")
    a("| --- | ---: | ---: | ---: | ---: |")
    for name, e in results["ceilings"].items():
        if "curve" in e:
            h = e.get("at_half_peak") or {}
            a(f"| {name} | {_n(e['peak_rps'])} | {_n(e.get('wrk_rps'))} | {_n(h.get('p50_ms'), 1)} "
              f"| {_n(h.get('p99_ms'), 1)} |")  # fmt: skip
    a("\nEvery step of every curve (offered rate, achieved throughput, latencies, errors):\n")
    a("| path | offered | achieved | p50 | p95 | p99 | max (ms) | errors |")
    a("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for group in ("ceilings", "paths"):
        for name, e in results[group].items():
            for s in e.get("curve", []):
                a(_stats_row(name, s))
    skew = results.get("upvote_skew")
    if skew:
        a(f"\n**Upvotes on a hot issue** ({_n(skew['hot_issue_upvotes_before'])} upvotes before measuring, more "
          f"during) against upvotes on issues with few: peak {_n(skew.get('peak_ratio'), 2)}× lower, p50 at half "
          f"the peak {_n(skew.get('p50_ratio'), 2)}× (target within 1.5×).\n")  # fmt: skip
    arg = results.get("argon2")
    if arg:
        a(f"\n**Sign-in cost (argon2id, time_cost {arg['time_cost']}, {arg['memory_kib']} KiB)**: one verify takes "
          f"{arg['verify_ms']:.1f} ms of one core here, so one core signs in at most {arg['per_core_per_s']:.1f} "
          f"users/s; the HTTP sign-in peaked at {_n(results['paths'].get('sign_in', {}).get('peak_rps'), 1)}/s. "
          "That is why sign-in is 0.5 % and registration 0.25 % of the mix (a user signs in once per session and "
          "refreshes the token after that), and why the capacity model gives argon2 its own processes.\n")  # fmt: skip
    a("## Engine ceilings\n")
    a("| ceiling | value | unit | how |")
    a("| --- | ---: | --- | --- |")
    for name, e in results["ceilings"].items():
        if "value" in e:
            a(f"| {name} | {_n(e['value'])} | {e['unit']} | {e['how']} |")
    cache_paths = {k: v for k, v in results["paths"].items() if "value" in v}
    if cache_paths:
        a("\n| cache path | ops/s | ceiling | ratio |")
        a("| --- | ---: | --- | ---: |")
        for name, e in cache_paths.items():
            a(f"| {name} ({e['how']}) | {_n(e['value'])} | {e['ceiling']} | {_n(e.get('ratio'), 2)} |")
    a("\n## Projector catch-up\n")
    a("A SQLite log pre-filled with realistic events (users registered; issues reported, upvoted twice, commented, "
      "acknowledged) folded from position 0 by `projectors.runner.ProjectionRunner` with every projection of "
      "`projectors.catalog.ALL`, the production batch size and an in-process cache.\n")  # fmt: skip
    a("| views | events | seconds | events/s | ceiling events/s | ratio | target | view writes/event | dead letters |")
    a("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
    for name, e in results.get("projector", {}).items():
        ok = "met" if e["ratio"] >= e["target_ratio"] else "**missed**"
        a(f"| {name} | {_n(e['events'])} | {_n(e['seconds'], 1)} | {_n(e['events_per_s'])} | "
          f"{_n(e['ceiling_eps'])} ({e['ceiling_how']}) | {_n(e['ratio'], 2)} | ≥ 0.5 ({ok}) | "
          f"{e['writes_per_event']:.2f} | {e['dead_lettered']} |")  # fmt: skip
    mix = results.get("mix")
    if mix:
        a("\n## The original design's mix, embedded deployment\n")
        a("Shares (percent of requests): " + ", ".join(f"{k} {v:g}" for k, v in mix["shares"].items()) + ".\n")
        a("Capacity (highest step whose requests other than sign-in and registration held p99 ≤ 100 ms with "
          "≥ 99 % success; argon2 requests are reported in their own column): "
          f"**{_n(mix['capacity_rps'])} req/s** on one "
          "server core. The phases are fractions of it.\n")  # fmt: skip
        a("| phase | offered | achieved | p50 | p95 | p99 | max (ms) | errors | cache hits | argon2 p50 / p99 (ms) |")
        a("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for ph in mix["phases"]:
            arg = ph.get("argon2") or {}
            hit = ph.get("cache_hit_ratio")
            a(
                _stats_row(f"{ph['phase']} ({ph['fraction']:.0%}, {ph['seconds']}s)", ph)
                + f" {'–' if hit is None else f'{hit:.1%}'} | {_n(arg.get('p50_ms'), 0)} / {_n(arg.get('p99_ms'), 0)} |"
            )
        sus = next((p for p in mix["phases"] if p["phase"] == "sustained"), None)
        if sus:
            a("\nPer request class in the sustained phase:\n")
            a("| class | offered | achieved | p50 | p95 | p99 | max (ms) | errors |")
            a("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for k, s in sus["classes"].items():
                a(_stats_row(k, s))
        a("\n**Freshness** (a command's 2xx until `GET /v1/issues/{id}` answers 200; target p99 < 50 ms embedded):\n")
        a("| when | samples | failures | p50 (ms) | p99 (ms) | max (ms) |")
        a("| --- | ---: | ---: | ---: | ---: | ---: |")
        for label, f in (
            ("idle server", mix.get("freshness_idle")),
            ("during the sustained phase", sus.get("freshness") if sus else None),
        ):
            if f:
                a(f"| {label} | {f['samples']} | {f['failures']} | {_n(f['p50_ms'], 1)} | {_n(f['p99_ms'], 1)} | "
                  f"{_n(f['max_ms'], 1)} |")  # fmt: skip
        if mix.get("freshness_idle"):
            a(f"\n({mix['freshness_idle']['how']}.)")
        L.extend(phase_extras(mix))
        L.extend(follow_location_line(mix))
        hit = mix.get("cache_hit_ratio")
        per = {k: v for k, v in (mix.get("cache_hit_ratios") or {}).items() if k != "overall"}
        a(
            f"\nCache hit ratio over the mix: {'not exported on /metrics yet' if hit is None else f'{hit:.1%}'} "
            "(target > 90 %)"
            + (" — by cache: " + ", ".join(f"{k} {_pct(v)}" for k, v in per.items()) if per else "")
            + ".\n"
        )
    L.extend(_both(results))
    from bench import extras

    if extra := extras.markdown(results.get("extras", {})):
        a("\n## Queries, rebuilds, the command path and export\n")
        a(extra + "\n")
    if results.get("analysis"):
        a("## Where targets are missed, and why\n")
        a(results["analysis"])
    if results["notes"]:
        a("\n## Notes from this run\n")
        for n in results["notes"]:
            a(f"- {n}")
    a("\n## Capacity model (`snapfix capacity --rps 50000 --users 100000 --p99-ms 100`)\n")
    try:
        from ops.capacity import Targets, figures_from_results, plan, render

        t = Targets()
        f = figures_from_results(results, t.p99_ms)
        a("```\n" + render(t, f, plan(t, f), bench / "results.json") + "\n```")
    except (ValueError, KeyError) as e:
        a(f"Not computed from this run: {e}")
    a("\n## Plots\n")
    for img in images:
        a(f"![{img}](plots/{img})")
    a("\n## Commands run\n")
    a("```")
    seen = set()
    for cmd in meta.get("commands", []):
        key = cmd.split("-output=")[0]
        if key not in seen:
            seen.add(key)
            a(cmd)
    a("```")
    (bench / "RESULTS.md").write_text("\n".join(L) + "\n")


def main() -> None:
    """``python -m bench.report``: rewrite RESULTS.md and the plots from results.json (and ANALYSIS.md)."""
    import orjson

    bench = Path(__file__).resolve().parent
    results = orjson.loads((bench / "results.json").read_bytes())
    analysis = bench / "ANALYSIS.md"
    if analysis.exists():
        results["analysis"] = analysis.read_text()
    write(results, bench)


if __name__ == "__main__":
    main()
