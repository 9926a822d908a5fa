"""`wam-ros replay`: recorded episodes through the policy, offline or live.

Offline (deterministic, faster than real time, in the bag's own timing; data/replay.py):
    wam-ros replay BAG [BAG...] --checkpoint CKPT [--scheduler S] --json out.json --plot out.png
Live (the bag onto its topics, raw bytes, original timing, /clock; nodes/bag_player_node.py):
    wam-ros replay BAG --live [--rate R] [--loop]
        run the graph yourself with use_sim_time:=true params_file:=config/replay.yaml
    wam-ros replay BAG --live --checkpoint CKPT [--scheduler ...] [--json out.json]
        also starts the node graph (as `ros2 launch` would, on sim time), plays the bag once and
        checks that chunks and commands come out and stay within the robot's limits
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from wam_ros.core.settings import LOCAL_BACKENDS, MEMORIES, MODES, SCHEDULERS, PolicySettings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="replay episode bags through the policy (offline / live)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bags", nargs="+", help="bag directories / files, or directories of bags")
    p.add_argument("--checkpoint", help="policy checkpoint directory")
    p.add_argument("--scheduler", choices=SCHEDULERS, default=PolicySettings.scheduler)
    p.add_argument("--memory", choices=MEMORIES, default=PolicySettings.memory)
    p.add_argument("--mode", choices=MODES, default=PolicySettings.mode)
    p.add_argument("--backend", choices=LOCAL_BACKENDS, default=PolicySettings.backend)
    p.add_argument("--flow-steps", type=int, default=4)
    p.add_argument("--latency-ms", type=float, default=100.0,
                   help="offline: simulated inference latency (<= 0: the measured one, not "
                        "deterministic; default 100)")
    p.add_argument("--task", default="", help="task given to the policy (default: the bag's)")
    p.add_argument("--json", help="write the report here")
    p.add_argument("--plot", help="offline: predicted vs recorded trajectories (PNG)")
    p.add_argument("--video", metavar="DIR",
                   help="offline: DIR/<bag>.mp4 per bag, the cameras side by side with the "
                        "time and plan latency overlaid")
    p.add_argument("--live", action="store_true", help="publish the bag on its topics")
    p.add_argument("--rate", type=float, default=1.0, help="live: playback speed")
    p.add_argument("--loop", action="store_true", help="live: start over at the end")
    p.add_argument("--clock-hz", type=float, default=100.0, help="live: /clock rate (0: none)")
    p.add_argument("--topics", nargs="*", default=[], help="live: only these topics")
    p.add_argument("--workdir", help="live with --checkpoint: node logs (default: a temp dir)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.live:
        if len(args.bags) != 1:
            print("error: --live plays one bag", file=sys.stderr)
            return 2
        if args.checkpoint:
            return run_live_graph(args)
        return run_live(args)
    if not args.checkpoint:
        print("error: offline replay needs --checkpoint", file=sys.stderr)
        return 2
    from wam_ros.core.config import ConfigError
    from wam_ros.data.replay import ReplayOptions, replay

    options = ReplayOptions(scheduler=args.scheduler, memory=args.memory, mode=args.mode,
                            backend=args.backend, flow_steps=args.flow_steps,
                            latency_ms=args.latency_ms, task=args.task)
    try:
        report = replay(args.bags, args.checkpoint, options, args.json, args.plot,
                        video_dir=args.video)
    except (ConfigError, ValueError, FileNotFoundError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(report['episodes'])} episodes, {report['chunks']} chunks: action mse "
          f"{report['action_mse']:.5f}, boundary mae {report['boundary_mae']:.4f}, latency "
          f"p50 {report['latency_ms.p50']:.1f} ms p99 {report['latency_ms.p99']:.1f} ms, "
          f"{report['speed_x']:.1f}x real time")
    return 0


def _player_params(args: argparse.Namespace, exit_when_done: bool) -> list[Any]:
    from rclpy.parameter import Parameter

    out = [Parameter("bag", value=str(args.bags[0])), Parameter("rate", value=args.rate),
           Parameter("loop", value=bool(args.loop)),
           Parameter("clock_hz", value=float(args.clock_hz)),
           Parameter("exit_when_done", value=exit_when_done)]
    if args.topics:  # an empty list would not be typed as a string array
        out.append(Parameter("topics", Parameter.Type.STRING_ARRAY, list(args.topics)))
    return out


def run_live(args: argparse.Namespace) -> int:
    from wam_ros.nodes.bag_player_node import BagPlayerNode
    from wam_ros.nodes.common import run_nodes

    return run_nodes([lambda: BagPlayerNode(parameter_overrides=_player_params(args, True))],
                     [sys.argv[0]])


def run_live_graph(args: argparse.Namespace) -> int:
    """Node graph (processes, sim time) + bag player + probe; report and limit check."""
    import rclpy
    import yaml
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import JointState

    from wam_ros.bringup.graph import GraphArgs, build_graph
    from wam_ros.core.config import ConfigError
    from wam_ros.core.robot import RobotSpec
    from wam_ros.model.checkpoint import read_checkpoint_config
    from wam_ros.nodes import topics
    from wam_ros.nodes.bag_player_node import BagPlayerNode
    from wam_ros.paths import config_dir
    from wam_ros.testing.process import NodeProcess, spin_until
    from wam_ros_msgs.msg import ActionChunk

    try:
        cfg, _ = read_checkpoint_config(args.checkpoint)
        spec = RobotSpec.load(cfg.robot)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="wam_replay_"))
    workdir.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((config_dir() / "replay.yaml").read_text())
    params_file = workdir / "replay_params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    graph = build_graph(GraphArgs(robot=spec.name, checkpoint=str(args.checkpoint),
                                  backend=args.backend, memory=args.memory,
                                  scheduler=args.scheduler, mode=args.mode, use_sim_time=True,
                                  params_file=str(params_file)))
    procs = [NodeProcess(n.command(), log_path=str(workdir / f"{n.name}.log")) for n in graph]
    rclpy.init(args=[sys.argv[0]])
    player = probe = None
    executor = SingleThreadedExecutor()
    chunks: list[Any] = []
    commanded: list[np.ndarray] = []
    report: dict[str, Any] = {"bag": str(args.bags[0]), "checkpoint": str(args.checkpoint),
                              "scheduler": args.scheduler, "rate": args.rate,
                              "workdir": str(workdir)}
    try:
        # started by hand (player.start) once the graph is up
        player = BagPlayerNode(parameter_overrides=[*_player_params(args, False),
                                                    _param("start_delay_s", 1e6)])
        probe = rclpy.create_node("wam_replay_probe")
        probe.create_subscription(ActionChunk, topics.CHUNK_JOINT, chunks.append,
                                  topics.CHUNK_QOS)
        probe.create_subscription(JointState, topics.COMMANDED,
                                  lambda m: commanded.append(np.array(m.position)), 100)
        executor.add_node(player)
        executor.add_node(probe)

        def ready() -> bool:
            return (probe.count_publishers(topics.CHUNK_RAW) > 0
                    and probe.count_subscribers(topics.CHUNK_JOINT) > 1
                    and all(probe.count_subscribers(c.topic) > 0 for c in spec.cameras)
                    and all(p.alive() for p in procs))

        t0 = time.monotonic()
        if not spin_until(executor, ready, 180.0):
            dead = [p for p in procs if not p.alive()]
            print("error: the node graph did not come up" + "".join(
                f"\n--- {p.cmd[2]}\n{p.output()}" for p in dead), file=sys.stderr)
            return 1
        report["graph_startup_s"] = time.monotonic() - t0
        t0 = time.monotonic()
        player.start()
        spin_until(executor, player.done.is_set, player.playback.duration_s / args.rate * 3
                   + 30.0)
        spin_until(executor, lambda: False, 0.5)  # the last messages in flight
        report["wall_s"] = time.monotonic() - t0
        report["duration_s"] = player.playback.duration_s
        report["published"] = sum(player.published.values())
        report["playback_lag_ms.p99"] = (float(np.percentile(player.lag_s, 99) * 1e3)
                                         if player.lag_s else 0.0)
    finally:
        codes = [p.stop() for p in procs]
        if player is not None:
            player.close()
        executor.shutdown()
        for node in (player, probe):
            if node is not None:
                node.destroy_node()
        rclpy.try_shutdown()
    report["exit_codes"] = codes
    lower, upper = spec.limits_array("lower"), spec.limits_array("upper")
    q = np.array(commanded) if commanded else np.zeros((0, spec.action_dim))
    step = spec.limits_array("velocity") / spec.control_rate_hz
    inside = bool(np.all(q >= lower - 1e-9) and np.all(q <= upper + 1e-9))
    steps = np.abs(np.diff(q, axis=0)) / step if len(q) > 1 else np.zeros((0,))
    latencies = [c.inference_time * 1e3 for c in chunks]
    report.update({
        "chunks": len(chunks), "commands": len(q),
        "within_position_limits": inside,
        "max_step_ratio": float(steps.max()) if steps.size else 0.0,
        "within_limits": inside and (not steps.size or float(steps.max()) <= 1.05),
        "latency_ms.p50": float(np.percentile(latencies, 50)) if latencies else 0.0,
        "latency_ms.p99": float(np.percentile(latencies, 99)) if latencies else 0.0,
    })
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
    print(f"live replay: {report['published']} messages in {report['wall_s']:.1f} s, "
          f"{report['chunks']} chunks, {report['commands']} commands, within limits: "
          f"{report['within_limits']} (largest step {report['max_step_ratio']:.2f} x the "
          "velocity limit)")
    ok = report["chunks"] > 0 and report["commands"] > 0 and report["within_limits"]
    return 0 if ok else 1


def _param(name: str, value: Any) -> Any:
    from rclpy.parameter import Parameter

    return Parameter(name, value=value)


__all__ = ["register", "run"]
