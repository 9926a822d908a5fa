"""`wam-ros demo` and `wam-ros eval`: their arguments (the runs: apps/demo.py)."""

from __future__ import annotations

import argparse

from wam_ros.apps.demo import run_demo, run_eval
from wam_ros.core.settings import LOCAL_BACKENDS, MEMORIES, SCHEDULERS, PolicySettings


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--robot", default="cobot_magic")
    p.add_argument("--task", default="pick_place", help="pick_place | handover")
    p.add_argument("--checkpoint", default="",
                   help="empty: the default shipped for the robot (and the task, where one is)")
    p.add_argument("--backend", default=PolicySettings.backend, choices=LOCAL_BACKENDS)
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--seed", type=int, default=1000, help="first scene seed")
    p.add_argument("--timeout", type=float, default=20.0, help="sim seconds per episode")
    p.add_argument("--real-time-factor", type=float, default=None,
                   help="the simulator's pace (sim seconds per wall second; at most this, less "
                        "when the CPU cannot keep up). Below 1 the node graph gets more compute "
                        "per sim second: what a faster on-board computer would give it. "
                        "Default: one control period of sim time per 50 ms of wall time, at "
                        "most 0.5 (G1: 0.2, CobotMagic: 0.4), so that a stall of the graph on "
                        "a shared CPU costs at most one period (closed_loop.GRAPH_STALL_S)")
    p.add_argument("--max-command-age-ms", type=float, default=-1.0,
                   help="graph-paced simulation: the simulator slows down (below "
                        "--real-time-factor) while the graph's newest command is older than "
                        "this in sim time, as if the on-board computer kept up (sim/pace.py). "
                        "Default -1: 2.5 control periods; 0: a fixed pace")
    p.add_argument("--composed", action="store_true",
                   help="run the four nodes in one process (default: one process each)")
    p.add_argument("--served", action="store_true",
                   help="run the model behind `wam-ros serve` (its own process, the openpi "
                        "websocket protocol over the loopback; --backend is then the server's) "
                        "and the policy node with backend remote (sync and async only)")
    p.add_argument("--json", dest="json_out", default="")
    p.add_argument("--keep-logs", default="", metavar="DIR",
                   help="write the nodes' logs (and the exported checkpoint) under DIR and "
                        "keep them (default: a temporary folder, deleted at the end)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="simulated robot + node graph + checkpoint, in closed loop")
    _common(p)
    p.add_argument("--scheduler", default=PolicySettings.scheduler, choices=SCHEDULERS)
    p.add_argument("--memory", default=PolicySettings.memory, choices=MEMORIES)
    p.add_argument("--headless", default=True, action=argparse.BooleanOptionalAction,
                   help="offscreen rendering only (no window; --no-headless needs a display)")
    p.add_argument("--out", default="demo_out",
                   help="folder for the image strip, the plot and the first episode's video")
    p.add_argument("--video", metavar="DIR",
                   help="film every episode: DIR/episode_<k>.mp4 (cameras side by side; "
                        "episode, time, phase and plan latency overlaid)")
    p.set_defaults(func=run_demo)


def register_eval(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("eval", help="success and completion time per scheduler and memory")
    _common(e)
    e.set_defaults(episodes=10)
    e.add_argument("--schedulers", default=",".join(SCHEDULERS))
    e.add_argument("--memories", default=",".join(MEMORIES))
    e.set_defaults(func=run_eval)
