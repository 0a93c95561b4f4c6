"""``python -m bench.profile KIND RATE``: py-spy samples the embedded server while vegeta drives one request class.

Prints the hottest frames (self time) and the SnapFix functions with the most inclusive time;
that is how RESULTS.md explains a missed target.
"""

from __future__ import annotations

import asyncio
import collections
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench import loadgen
from bench.procs import VENV_BIN, pin_self_to_load_core, snapfix_server
from bench.workload import Targets, prepare

OURS = ("command_api", "query_api", "projectors", "events", "snapfix")


def top(collapsed: Path, n: int = 15) -> str:
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        k = int(count)
        total += k
        frames = stack.split(";")
        self_time[frames[-1]] += k
        for f in set(frames):
            if any(f"{o}/" in f for o in OURS):
                inclusive[f] += k
    out = [f"{total} samples", "", "self time:"]
    out += [f"  {c / total:6.1%}  {f}" for f, c in self_time.most_common(n)]
    out += ["", "inclusive time in SnapFix code:"]
    out += [f"  {c / total:6.1%}  {f}" for f, c in inclusive.most_common(n)]
    return "\n".join(out)


def main() -> None:
    kind, rate = sys.argv[1], float(sys.argv[2])
    seconds = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    pin_self_to_load_core()
    work = Path(tempfile.mkdtemp(prefix="snapfix-profile-"))
    print(f"work dir: {work}", flush=True)
    env = {"SNAPFIX_EVENT_LOG": f"sqlite:///{work / 'e.db'}", "SNAPFIX_VIEW_STORE": f"sqlite:///{work / 'v.db'}",
           "SNAPFIX_ACCESS_TOKEN_TTL_S": "14400", "SNAPFIX_RATE_LIMIT_IP_WRITES": "0",
           "SNAPFIX_RATE_LIMIT_USER_WRITES": "0", "SNAPFIX_RATE_LIMIT_SIGN_INS": "0"}  # fmt: skip
    with snapfix_server("profiled", env, work) as server:
        world = asyncio.run(prepare(server.base, 16, 5))
        targets = Targets(world).file_for(kind, work)(rate, seconds + 2)
        assert server.proc is not None
        out = work / "stacks.txt"
        spy = [str(VENV_BIN / "py-spy"), "record", "--pid", str(server.proc.pid), "--duration", str(seconds),
               "--rate", "200", "--format", "raw", "--output", str(out), "--nonblocking", "--gil"]  # fmt: skip
        t = threading.Thread(target=lambda: loadgen.attack(targets, rate, seconds + 2, work, f"profile-{kind}"))
        t.start()
        subprocess.run(spy, check=True, capture_output=True)
        t.join()
        print(f"py-spy of `snapfix serve` under {kind} at {rate:g} req/s for {seconds}s")
        print(top(out))


if __name__ == "__main__":
    main()
