"""`make demo` with its trained rows' members as Ray tasks vs one after the other.

    python benchmarks/demo_engines.py [--out /tmp/demo_engines] [--engines ray,local] [--config C.yaml]

Runs ``zeroground demo --engine E --out OUT/E`` from scratch for each engine (one run each:
a full demo is minutes long), prints each wall time, their ratio, and whether the two
results tables are identical row by row (same seeds, same per-member work). The results
are in ``benchmarks/README.md`` ("The demo end to end").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def run(engine: str, out: Path, config: str | None) -> tuple[float, list[dict]]:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "zeroground", "demo", "--out", str(out), "--engine", engine, "--quiet"]
    if config:
        cmd += ["--config", config]
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - t
    return seconds, json.loads((out / "results.json").read_text())["rows"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/demo_engines")
    ap.add_argument("--engines", default="ray,local")
    ap.add_argument("--config", default=None)
    args = ap.parse_args()
    results = {}
    for engine in args.engines.split(","):
        load = os.getloadavg()[0]
        seconds, rows = run(engine, Path(args.out) / engine, args.config)
        results[engine] = (seconds, rows)
        print(f"{engine}: {seconds:.0f} s wall ({seconds / 60:.1f} min; load average at its start {load:.1f})",
              flush=True)
    if len(results) == 2:
        (a, (ta, ra)), (b, (tb, rb)) = results.items()
        print(f"{b} / {a}: {tb / ta:.2f}x")
        same = ra == rb
        print(f"tables identical row by row: {same}")
        if not same:
            for x, y in zip(ra, rb):
                if x != y:
                    print(f"  {a}: {x}\n  {b}: {y}")


if __name__ == "__main__":
    main()
