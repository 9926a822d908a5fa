"""`wam-ros demo`: the full node graph in closed loop against a robot stand-in, then a report.

Starts the robot stand-in and the four nodes as separate processes (exactly what the launch
files start), lets the policy drive for `--seconds`, and prints chunk latency and how much of the
time the arm waited for a plan; writes a plot of commanded vs measured joints.

Until the MuJoCo simulator with tasks and trained default checkpoints lands, the stand-in is the
kinematic fake robot (wam_ros.sim.fake_robot) and, without a shipped checkpoint, the policy is an
untrained tiny model: the demo then shows the machinery (timing, smoothing, limits), not a task.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the robot stand-in with the full node graph")
    p.add_argument("--robot", default="cobot_magic")
    p.add_argument("--checkpoint", default="", help="empty: the shipped default, if any")
    p.add_argument("--scheduler", default="async", choices=("sync", "async", "sai"))
    p.add_argument("--memory", default="kv", choices=("kv", "ttt"))
    p.add_argument("--backend", default="torch", choices=("torch", "onnxruntime", "tensorrt"))
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--out", default="demo_out", help="folder for the plot")
    p.add_argument("--json", dest="json_out", default="")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import JointState

    from wam_ros.core.config import ConfigError
    from wam_ros.core.robot import RobotSpec
    from wam_ros.model.testing import make_tiny_checkpoint
    from wam_ros.nodes import conversions, topics
    from wam_ros.nodes.process import start_graph_processes
    from wam_ros.paths import resolve_checkpoint
    from wam_ros_msgs.msg import ActionChunk

    spec = RobotSpec.load(args.robot)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wam_demo_") as tmp:
        work = Path(tmp)
        try:
            checkpoint = resolve_checkpoint(args.checkpoint, spec.name)
            note = f"checkpoint {checkpoint}"
        except ConfigError:
            if args.checkpoint:
                raise
            checkpoint = make_tiny_checkpoint(work / "ckpt", spec.name)
            note = "no default checkpoint shipped yet: untrained tiny model"
        print(f"[demo] {spec.name}, scheduler {args.scheduler}, memory {args.memory}, "
              f"backend {args.backend}; {note}", flush=True)
        procs = start_graph_processes(out_dir, spec.name, checkpoint, backend=args.backend,
                                      memory=args.memory, scheduler=args.scheduler,
                                      fake_robot={"camera_scale": 0.5})
        rclpy.init()
        node = rclpy.create_node("wam_demo_probe")
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        chunks: list[ActionChunk] = []
        commanded: list[tuple[float, np.ndarray]] = []
        measured: list[tuple[float, np.ndarray]] = []
        received: list[float] = []
        node.create_subscription(ActionChunk, topics.CHUNK_JOINT,
                                 lambda m: (chunks.append(m), received.append(time.time())),
                                 topics.CHUNK_QOS)
        node.create_subscription(JointState, topics.COMMANDED, lambda m: commanded.append(
            (conversions.to_sec(m.header.stamp), np.array(m.position))), 100)

        def on_joints(m: JointState) -> None:
            try:
                q = conversions.joint_positions(m, spec.action_layout)
            except KeyError:
                return
            measured.append((conversions.to_sec(m.header.stamp), q))

        node.create_subscription(JointState, spec.joint_state_topic, on_joints,
                                 topics.SENSOR_QOS)
        try:
            deadline = time.monotonic() + 120.0
            while not chunks and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.05)
                dead = [p for p in procs if not p.alive()]
                if dead:
                    print(dead[0].output())
                    return 1
            start = time.monotonic()
            while time.monotonic() - start < args.seconds:
                executor.spin_once(timeout_sec=0.05)
        finally:
            executor.shutdown()
            node.destroy_node()
            rclpy.try_shutdown()
            for p in procs:
                p.stop()

    latency = np.array([(t - (m.header.stamp.sec + m.header.stamp.nanosec * 1e-9)) * 1e3
                        for m, t in zip(chunks, received)])
    inference = np.array([m.inference_time * 1e3 for m in chunks])
    result = {
        "robot": spec.name, "scheduler": args.scheduler, "memory": args.memory,
        "chunks": len(chunks),
        "latency_ms": {"p50": float(np.percentile(latency, 50)),
                       "p99": float(np.percentile(latency, 99))},
        "inference_ms": {"p50": float(np.percentile(inference, 50)),
                         "p99": float(np.percentile(inference, 99))},
    }
    print(f"\n{'chunks':>8} {'latency p50':>12} {'latency p99':>12} {'model p50':>10}")
    print(f"{len(chunks):8d} {result['latency_ms']['p50']:10.1f}ms "
          f"{result['latency_ms']['p99']:10.1f}ms {result['inference_ms']['p50']:8.1f}ms")
    print("(latency: camera stamp -> decoded chunk at the smoother)")
    plot = out_dir / "joints.png"
    _plot(spec, commanded, measured, plot)
    print(f"plot: {plot}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _plot(spec, commanded, measured, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not commanded:
        return
    t0 = commanded[0][0]
    tc, qc = np.array([c[0] for c in commanded]) - t0, np.array([c[1] for c in commanded])
    tm, qm = np.array([m[0] for m in measured]) - t0, np.array([m[1] for m in measured])
    n = spec.action_dim
    cols = 2
    fig, axes = plt.subplots((n + 1) // cols, cols, figsize=(11, 1.6 * ((n + 1) // cols)),
                             sharex=True)
    for i, ax in enumerate(axes.ravel()[:n]):
        ax.plot(tc, qc[:, i], lw=1.2, label="commanded")
        if len(tm):
            ax.plot(tm, qm[:, i], lw=1.0, ls="--", label="measured")
        ax.set_ylabel(spec.action_layout[i], fontsize=7)
    axes.ravel()[0].legend(fontsize=7)
    fig.suptitle(f"{spec.name}: commanded vs measured joints")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
