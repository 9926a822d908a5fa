"""Stage-by-stage latency of the launched graph from the nodes' own clocks (an experiment, not
part of the package). Needs stage-trace.patch applied: each node then appends
`<tag> <set stamp> <time>` lines to $WAM_TRACE/<pid>.txt at each stage of a plan.

Starts the fake robot and the four nodes exactly as `wam-ros bench pipeline --graph launched`
does (bench_pipeline.start_processes: the launch files' NodeSpecs, their DDS profile, the
default realtime_priority), optionally changes the scheduling of some threads once they run,
waits, and prints p50 / p90 / p99 / max of every stage over the plans of the last 3/4 of the
window.

    python trace_stages.py [--duration 75] [--fake-fifo 40] [--other NODE[:THREAD]]
                           [--pin CPU]

--fake-fifo P    the fake robot (the camera driver and ros2_control) at SCHED_FIFO P
--other N[:T]    node N's threads (those whose name contains T) at SCHED_OTHER
--pin CPU        every thread of the four nodes on one CPU, except the policy's inference
                 threads (its busiest thread and those at the inference nice value)
"""

from __future__ import annotations

import argparse
import collections
import glob
import itertools
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from wam_ros.apps.bench_pipeline import start_processes
from wam_ros.core.settings import RT_PRIORITY_DEFAULT, PolicySettings

ORDER = ["obs_rcv", "obs_pub", "pol_rx", "pol_job", "pol_pre", "pol_pub", "dec_rx", "dec_pub",
         "smo_rx", "smo_acc", "smo_cmd"]


def threads(pid: int) -> list[int]:
    return [int(t) for t in os.listdir(f"/proc/{pid}/task")]


def thread_name(tid: int) -> str:
    return Path(f"/proc/{tid}/comm").read_text().strip()


def cpu_ticks_and_nice(pid: int, tid: int) -> tuple[int, int]:
    """(CPU ticks, nice) of one thread of process `pid` (/proc/<tid>/stat would count the
    whole process's CPU)"""
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12]), int(fields[16])


def context_switches(tid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of a thread so far"""
    status = dict(line.split(":\t", 1)
                  for line in Path(f"/proc/{tid}/status").read_text().splitlines()
                  if ":\t" in line)
    return int(status["voluntary_ctxt_switches"]), int(status["nonvoluntary_ctxt_switches"])


def start_graph(prefix: str) -> tuple[str, list, dict[str, int]]:
    """The fake robot and the four nodes as the bench's launched graph, tracing to a new
    folder: (that folder, the processes, pid by name: fake, wam_observation, ...)."""
    workdir = tempfile.mkdtemp(prefix=prefix)
    os.environ["WAM_TRACE"] = workdir
    procs = start_processes(
        Path(workdir), "cobot_magic", Path("wam_ros/checkpoints/cobot_magic"),
        backend="torch", memory="kv", scheduler="async", composed=False, camera_size="robot",
        image_size=(96, 96), dds_profile="launch", sessions="launch", policy_params=None,
        realtime_priority=RT_PRIORITY_DEFAULT, tag="t")
    return workdir, procs, {Path(p.log_path).stem[2:]: p.proc.pid for p in procs}


def read_events(workdir: str) -> dict[float, dict[str, float]]:
    """set stamp -> {stage tag: the first time it was reached}, from every process's file."""
    events: dict[float, dict[str, float]] = collections.defaultdict(dict)
    for path in glob.glob(f"{workdir}/*.txt"):
        for line in Path(path).read_text().splitlines():
            tag, stamp, t = line.split()
            events[round(float(stamp), 6)].setdefault(tag, float(t))
    return events


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=75.0)
    ap.add_argument("--settle", type=float, default=20.0, help="s before any change")
    ap.add_argument("--fake-fifo", type=int, default=0)
    ap.add_argument("--other", default="")
    ap.add_argument("--pin", type=int, default=-1)
    args = ap.parse_args()
    workdir, procs, by_name = start_graph("wam_trace_")
    try:
        time.sleep(args.settle)
        if args.fake_fifo:
            for tid in threads(by_name["fake"]):
                os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(args.fake_fifo))
        if args.other:
            node, _, match = args.other.partition(":")
            for tid in threads(by_name[node]):
                if match in thread_name(tid):
                    os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        if args.pin >= 0:
            nice = PolicySettings().inference_nice
            for node in ("wam_observation", "wam_policy", "wam_decoder", "wam_smoother"):
                pid = by_name[node]
                tids = threads(pid)
                skip: set[int] = set()
                if node == "wam_policy":
                    before = {t: cpu_ticks_and_nice(pid, t)[0] for t in tids}
                    time.sleep(3)
                    after = {t: cpu_ticks_and_nice(pid, t) for t in tids}
                    skip = {max(tids, key=lambda t: after[t][0] - before[t])}
                    skip |= {t for t in tids if after[t][1] == nice}
                for tid in set(tids) - skip:
                    os.sched_setaffinity(tid, {args.pin})
        time.sleep(args.duration)
    finally:
        for p in procs:
            p.stop()
    events = read_events(workdir)
    plans = sorted(k for k, e in events.items() if all(tag in e for tag in ORDER))
    plans = plans[len(plans) // 4:]  # start-up left out
    rows = []
    for k in plans:
        e = events[k]
        row = {"camera transport": e["obs_rcv"] - k}
        row.update({f"{a} -> {b}": e[b] - e[a] for a, b in itertools.pairwise(ORDER)})
        # what the bench's stack overhead counts: up to the policy's receipt, then from the
        # chunk's publication (the model and the scheduler's wait left out)
        row["overhead"] = (e["pol_rx"] - k) + (e["smo_cmd"] - e["pol_pre"])
        rows.append(row)
    print(f"plans: {len(rows)}")
    for name in rows[0]:
        v = np.array([r[name] for r in rows]) * 1e3
        print(f"{name:20s} p50 {np.percentile(v, 50):6.2f}  p90 {np.percentile(v, 90):6.2f}  "
              f"p99 {np.percentile(v, 99):6.2f}  max {v.max():6.2f}")


if __name__ == "__main__":
    main()
