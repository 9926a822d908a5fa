"""`wam-ros bench model|pipeline|remote|record`: the benchmarks' arguments; the benchmarks
are in apps/ (bench_model.py, bench_pipeline.py, bench_remote.py, bench_recording.py),
imported when run."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

from wam_ros.apps.bench_pipeline import CAMERA_SIZES
from wam_ros.core.settings import (
    LOCAL_BACKENDS,
    MEMORIES,
    MODES,
    RT_PRIORITY_DEFAULT,
    SCHEDULERS,
    PolicySettings,
)


def _lazy(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(f"wam_ros.apps.{module}"), name)(args)

    return run


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks (model latency and memory, ...)")
    benches = p.add_subparsers(dest="bench", metavar="BENCH")
    m = benches.add_parser("model", help="WAM latency per backend x mode, memory growth")
    m.add_argument("--checkpoint", help="checkpoint directory (default: build `default`)")
    m.add_argument("--robot", default="cobot_magic", help="robot for the built checkpoint")
    m.add_argument("--json", help="write the results to this JSON file")
    m.add_argument("--chunks", type=int, default=30, help="timed chunks per backend x mode")
    m.add_argument("--warmup", type=int, default=3)
    m.add_argument("--memory-chunks", type=int, default=2000,
                   help="chunks per memory in the growth test")
    m.add_argument("--backends", default=",".join(LOCAL_BACKENDS))
    m.add_argument("--modes", default=",".join(MODES))
    m.add_argument("--flow-steps", type=int, default=4)
    m.set_defaults(func=_lazy("bench_model", "run_model"))

    pl = benches.add_parser("pipeline", help="the node graph over DDS, per scheduler: stage "
                            "latency, stack overhead, idle fraction, boundary jumps")
    _pipeline_arguments(pl)
    pl.set_defaults(func=_lazy("bench_pipeline", "run"))

    rm = benches.add_parser("remote", help="openpi-protocol round trip (ours vs openpi-client) "
                            "and async against a server adding 50 / 150 / 500 ms")
    _remote_arguments(rm)
    rm.set_defaults(func=_lazy("bench_remote", "run"))
    rec = benches.add_parser("record", help="teleop recording to rosbag2, the dataset build "
                             "and a replay of it: throughput and losses")
    rec.add_argument("--robot", default="cobot_magic")
    rec.add_argument("--seconds", type=float, default=20.0)
    rec.add_argument("--flush-interval", type=float, default=1.0)
    rec.add_argument("--workdir", help="default: a temporary directory")
    rec.add_argument("--json", help="write the results here")
    rec.set_defaults(func=_lazy("bench_recording", "run"))
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _pipeline_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--robot", default="agibot_g1")
    p.add_argument("--checkpoint", default="",
                   help="checkpoint dir; empty = an untrained model of --config (latency only)")
    p.add_argument("--config", default="default", help="model preset when no checkpoint")
    p.add_argument("--backend", default=PolicySettings.backend, choices=LOCAL_BACKENDS)
    p.add_argument("--memory", default=PolicySettings.memory, choices=MEMORIES)
    p.add_argument("--schedulers", default=",".join(SCHEDULERS))
    p.add_argument("--duration", type=float, default=15.0, help="measured seconds per scheduler")
    p.add_argument("--graph", default="composed",
                   help="comma-separated, measured in alternating rounds: composed: the four "
                        "nodes in one process with in-process hand-off (wam_bringup); "
                        "processes: one process per node, all over DDS; launched: what ros2 "
                        "launch starts by default (one process per node) against robot-size "
                        "cameras; cameras: no graph, the robot-size frames to a bare "
                        "subscriber (the transport floor under every graph)")
    p.add_argument("--cameras", default="", choices=("", *CAMERA_SIZES),
                   help="fake robot frame size: model (the checkpoint's input) or robot (the "
                        "robot's cameras, 640x480; the observation node resizes); default: "
                        "robot for launched, model otherwise")
    p.add_argument("--dds-profile", default="launch",
                   help="comma-separated: launch (the Fast DDS profile the launch files "
                        "apply, unless FASTDDS_DEFAULT_PROFILES_FILE is set), none (Fast DDS "
                        "defaults in every process), graph-only (the launch's profile for the "
                        "graph, defaults for the fake robot's cameras)")
    p.add_argument("--sessions", default="launch",
                   help="comma-separated: launch (every process in this one's session, as "
                        "ros2 launch starts nodes), own (each process in a session of its own: "
                        "the kernel then shares CPU per process before nice values apply)")
    p.add_argument("--rounds", type=int, default=1,
                   help="repeat every graph x profile this many times, alternating")
    p.add_argument("--inference-nice", type=int, default=None,
                   help="nice value of the policy's inference threads (default: the policy "
                        "node's, config/wam_ros.yaml)")
    p.add_argument("--policy-param", action="append", default=[], metavar="NAME=VALUE",
                   help="a wam_policy parameter (repeatable), e.g. sai_s_mid=0.5")
    p.add_argument("--realtime-priority", default=str(RT_PRIORITY_DEFAULT),
                   help="comma-separated, measured in alternating rounds: the launch argument "
                        "realtime_priority of the graph (1..99: its processes' control path "
                        "SCHED_FIFO; needs an rtprio limit or CAP_SYS_NICE; inference threads "
                        "stay normal; 0: normal scheduling)")
    p.add_argument("--driver-priority", default="0",
                   help="comma-separated, measured in alternating rounds: the fake robot's "
                        "(camera driver's and controllers') SCHED_FIFO priority; 0: normal "
                        "scheduling, as a driver runs unless its integrator raises it")
    p.add_argument("--json", dest="json_out", default="", help="write the results here")


# ---- command line -----------------------------------------------------------------------------
def _remote_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", help="write the results to this JSON file")
    p.add_argument("--robot", default="cobot_magic")
    p.add_argument("--requests", type=int, default=300, help="timed round trips per client")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--horizon", type=int, default=30, help="actions per chunk")
    p.add_argument("--dt", type=float, default=1.0 / 30.0, help="seconds between actions")
    p.add_argument("--latencies-ms", default="50,150,500")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of async run per L")
    p.add_argument("--skip-round-trip", action="store_true")
