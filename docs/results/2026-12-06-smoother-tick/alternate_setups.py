"""Two scheduling set-ups of one running launched graph, alternating every --phase seconds:
the plans of each set-up, taken from the same minutes, compared (an experiment, not part of
the package). Rounds of separate runs differ more from each other than most changes do;
alternating within one run leaves the machine's drift out of the comparison.

Needs ../2026-12-06-launched-graph-tail/stage-trace.patch applied (the nodes' own stage
clocks). From the repository root:

    python docs/results/2026-12-06-smoother-tick/alternate_setups.py --variant V
        [--duration 360] [--phase 15]

V (the set-up switched on in every other phase; off: the graph as launched):
  fake-fifo               the fake robot (camera driver) at SCHED_FIFO 40
  pin:NODE:CPU[:THREAD]   NODE's threads (whose name contains THREAD) on CPU
  other:NODE[:THREAD]     NODE's threads (whose name contains THREAD) at SCHED_OTHER
  prio:NODE:N             NODE's SCHED_FIFO threads at priority N
  A+B                     both set-ups together
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "2026-12-06-launched-graph-tail"))
from trace_stages import ORDER, read_events, start_graph, thread_name, threads


class Setup:
    def __init__(self, variant: str, pids: dict[str, int]) -> None:
        self.variant, self.pids = variant, pids
        self.saved: dict[int, int] = {}  # tid -> its SCHED_FIFO priority (other:, prio:)
        self.parts = [Setup(v, pids) for v in variant.split("+")] if "+" in variant else []

    def apply(self, on: bool) -> None:
        for part in self.parts:
            part.apply(on)
        if self.parts:
            return
        kind, *rest = self.variant.split(":")
        if kind == "fake-fifo":
            for tid in threads(self.pids["fake"]):
                os.sched_setscheduler(tid, os.SCHED_FIFO if on else os.SCHED_OTHER,
                                      os.sched_param(40 if on else 0))
        elif kind == "pin":
            node, cpu, match = rest[0], rest[1], (rest[2] if len(rest) > 2 else "")
            for tid in threads(self.pids[node]):
                if match not in thread_name(tid):
                    continue
                os.sched_setaffinity(tid, {int(cpu)} if on else set(range(os.cpu_count())))
        elif kind == "other":
            node, match = rest[0], (rest[1] if len(rest) > 1 else "")
            for tid in threads(self.pids[node]):
                if match not in thread_name(tid):
                    continue
                if on and os.sched_getscheduler(tid) == os.SCHED_FIFO:
                    self.saved[tid] = os.sched_getparam(tid).sched_priority
                    os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
                elif not on and tid in self.saved:
                    os.sched_setscheduler(tid, os.SCHED_FIFO,
                                          os.sched_param(self.saved.pop(tid)))
        elif kind == "prio":
            node, priority = rest
            for tid in threads(self.pids[node]):
                if on and os.sched_getscheduler(tid) == os.SCHED_FIFO:
                    self.saved[tid] = os.sched_getparam(tid).sched_priority
                    os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(int(priority)))
                elif not on and tid in self.saved:
                    os.sched_setscheduler(tid, os.SCHED_FIFO,
                                          os.sched_param(self.saved.pop(tid)))
        else:
            raise SystemExit(f"unknown variant {self.variant!r}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", required=True)
    ap.add_argument("--duration", type=float, default=360.0)
    ap.add_argument("--phase", type=float, default=15.0)
    ap.add_argument("--settle", type=float, default=20.0)
    args = ap.parse_args()
    workdir, procs, pids = start_graph("wam_alternate_")
    setup = Setup(args.variant, pids)
    phases: list[tuple[float, float, bool]] = []  # (start, end, switched on)
    try:
        time.sleep(args.settle)
        end, on = time.time() + args.duration, False
        while time.time() < end:
            setup.apply(on)
            start = time.time()
            time.sleep(args.phase)
            phases.append((start, time.time(), on))
            on = not on
        setup.apply(False)
    finally:
        for p in procs:
            p.stop()
    events = read_events(workdir)
    rows: dict[bool, dict[str, list[float]]] = {
        False: collections.defaultdict(list), True: collections.defaultdict(list)}
    for stamp, e in events.items():
        if not all(tag in e for tag in ORDER):
            continue
        # a plan counts for a set-up when its frames were stamped 1 s or more into the
        # phase and its first command went out before the phase ended
        phase = next((on for t0, t1, on in phases if t0 + 1.0 <= stamp and e["smo_cmd"] <= t1),
                     None)
        if phase is None:
            continue
        row = rows[phase]
        row["overhead"].append((e["pol_rx"] - stamp) + (e["smo_cmd"] - e["pol_pre"]))
        row["camera transport"].append(e["obs_rcv"] - stamp)
        row["-> Observation published"].append(e["obs_pub"] - e["obs_rcv"])
        row["after the policy"].append(e["smo_cmd"] - e["pol_pre"])
    print(f"{args.variant}: {len(phases)} phases of {args.phase:g} s; p50 / p99 in ms")
    for on in (False, True):
        figures = "  ".join(
            f"{name} {np.percentile(v, 50) * 1e3:.2f} / {np.percentile(v, 99) * 1e3:.2f}"
            for name, v in rows[on].items())
        print(f"{'on ' if on else 'off'} ({len(rows[on]['overhead'])} plans): {figures}")


if __name__ == "__main__":
    main()
