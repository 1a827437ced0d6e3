"""Timing two implementations of one model side by side (``train_throughput.py``,
``lfvmr_train_throughput.py``): steps interleaved (reference, fast, reference, fast, ...) so that
load from other processes hits both alike; wall-clock and this process's CPU seconds; medians."""

from __future__ import annotations

import statistics
import sys
from typing import Callable

Timing = tuple[float, float]  # (wall s, CPU s of this process)


def time_interleaved(names: list[str], train_step: Callable[[str], Timing], eval_step: Callable[[str], Timing],
                     warmup: int, steps: int, eval_steps: int) -> dict[str, dict[str, list[Timing]]]:
    """``warmup + steps`` training steps then ``1 + eval_steps`` eval batches per name, interleaved;
    the warm-ups (and the first eval batch) are not kept."""
    times: dict[str, dict[str, list[Timing]]] = {n: {"train": [], "eval": []} for n in names}
    for i in range(warmup + steps):
        for n in names:
            dt = train_step(n)
            if i >= warmup:
                times[n]["train"].append(dt)
            print(f"train {n:9s} step {i}: {dt[0]:.2f} s wall, {dt[1]:.2f} s cpu", file=sys.stderr)
    for i in range(1 + eval_steps):
        for n in names:
            dt = eval_step(n)
            if i >= 1:
                times[n]["eval"].append(dt)
    return times


def speed_summary(times: dict[str, dict[str, list[Timing]]], batch: int) -> dict[str, float]:
    """Throughput of "fast" and, when "reference" was timed too, its figures and the ratios."""
    med = {n: {k: statistics.median(x[0] for x in v) for k, v in t.items()} for n, t in times.items()}
    cpu = {n: {k: statistics.median(x[1] for x in v) for k, v in t.items()} for n, t in times.items()}
    result = {
        "train_samples_per_s": round(batch / med["fast"]["train"], 2),
        "eval_queries_per_s": round(batch / med["fast"]["eval"], 2),
        "median_train_step_s": round(med["fast"]["train"], 3),
        "median_eval_batch_s": round(med["fast"]["eval"], 3),
    }
    if "reference" in med:
        result.update({
            "reference_train_samples_per_s": round(batch / med["reference"]["train"], 2),
            "reference_eval_queries_per_s": round(batch / med["reference"]["eval"], 2),
            "reference_median_train_step_s": round(med["reference"]["train"], 3),
            "train_speedup": round(med["reference"]["train"] / med["fast"]["train"], 2),
            "eval_speedup": round(med["reference"]["eval"] / med["fast"]["eval"], 2),
            # median over interleaved (reference, fast) pairs: robust to load that comes and goes
            "train_speedup_paired_median": round(statistics.median(
                r[0] / f[0] for r, f in zip(times["reference"]["train"], times["fast"]["train"])), 2),
            "train_speedup_cpu_time": round(cpu["reference"]["train"] / cpu["fast"]["train"], 2),
            "eval_speedup_cpu_time": round(cpu["reference"]["eval"] / cpu["fast"]["eval"], 2),
        })
    return result
