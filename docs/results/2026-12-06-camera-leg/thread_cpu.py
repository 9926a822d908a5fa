"""CPU and context switches of every thread of the launched graph (an experiment, not part of
the package): the graph started as the bench starts it, 20 s to settle, then each thread's CPU
time and switches over the next --window seconds, with its scheduling as it was at the end
(FIFO<priority> or n<nice>). From the repository root:

    python docs/results/2026-12-06-camera-leg/thread_cpu.py [--window 15]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "2026-12-06-launched-graph-tail"))
from trace_stages import context_switches, cpu_ticks_and_nice, start_graph, thread_name, threads


def scheduling(tid: int, nice: int) -> str:
    if os.sched_getscheduler(tid) == os.SCHED_FIFO:
        return f"FIFO{os.sched_getparam(tid).sched_priority}"
    return f"n{nice}"


def snapshot(pids: dict[str, int]) -> dict[tuple[str, int], tuple[str, int, int, int]]:
    """(process, tid) -> (thread name:scheduling, CPU ticks, voluntary, involuntary switches)"""
    out = {}
    for name, pid in pids.items():
        for tid in threads(pid):
            try:
                ticks, nice = cpu_ticks_and_nice(pid, tid)
                out[(name, tid)] = (f"{thread_name(tid)}:{scheduling(tid, nice)}", ticks,
                                    *context_switches(tid))
            except OSError:  # the thread ended
                continue
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--window", type=float, default=15.0)
    ap.add_argument("--settle", type=float, default=20.0)
    args = ap.parse_args()
    _, procs, pids = start_graph("wam_threads_")
    try:
        time.sleep(args.settle)
        before, t0 = snapshot(pids), time.time()
        time.sleep(args.window)
        after, elapsed = snapshot(pids), time.time() - t0
    finally:
        for p in procs:
            p.stop()
    tick = os.sysconf("SC_CLK_TCK")
    rows = []
    for key, (label, cpu, vol, invol) in after.items():
        if key in before:
            _, cpu0, vol0, invol0 = before[key]
            rows.append((key[0], label, (cpu - cpu0) / tick / elapsed * 1e3,
                         (vol - vol0) / elapsed, (invol - invol0) / elapsed))
    print("process          thread:scheduling          CPU ms/s  voluntary/s  involuntary/s")
    for proc, label, cpu, vol, invol in sorted(rows, key=lambda r: -r[2]):
        if cpu >= 0.5 or vol >= 10:
            print(f"{proc:16s} {label:26s} {cpu:8.1f} {vol:12.1f} {invol:14.1f}")


if __name__ == "__main__":
    main()
