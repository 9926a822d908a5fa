"""`wam-ros bench pipeline`: the whole node graph as processes over DDS, per scheduler.

Fake robot (3 cameras at the model resolution, 30 Hz) -> observation -> policy -> decoder ->
smoother -> controllers, with a probe node in this process that timestamps every stage. For each
chunk: camera stamp -> observation out -> (wait for the scheduler) -> model -> raw chunk out ->
decoded chunk out -> first command after it. stack overhead = end-to-end - model compute - the
scheduler's wait (the part the stack itself adds). Blocking latency and its parts (encoder,
context pass, flow steps: `<part>_ms`) come from the policy node's runner statistics; the idle
fraction (share of control time the arm held for lack of a plan) from the smoother's, over the
measured window only (/diagnostics).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from wam_ros.runtime.chunk_runner import PLAN_PARTS

SCHEDULERS = ("sync", "async", "sai")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--robot", default="agibot_g1")
    p.add_argument("--checkpoint", default="",
                   help="checkpoint dir; empty = an untrained model of --config (latency only)")
    p.add_argument("--config", default="default", help="model preset when no checkpoint")
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--memory", default="kv")
    p.add_argument("--schedulers", default=",".join(SCHEDULERS))
    p.add_argument("--duration", type=float, default=15.0, help="measured seconds per scheduler")
    p.add_argument("--graph", default="composed", choices=("composed", "processes"),
                   help="composed: the four nodes in one process with in-process hand-off "
                        "(wam_bringup); processes: one process per node, all over DDS")
    p.add_argument("--inference-nice", type=int, default=None,
                   help="nice value of the policy's inference threads (default: the policy "
                        "node's, config/wam_ros.yaml)")
    p.add_argument("--policy-param", action="append", default=[], metavar="NAME=VALUE",
                   help="a wam_policy parameter (repeatable), e.g. sai_s_mid=0.5")
    p.add_argument("--realtime-priority", type=int, default=0,
                   help="run the graph's processes SCHED_FIFO at this priority (1..99; needs "
                        "an rtprio limit or CAP_SYS_NICE; inference threads stay normal)")
    p.add_argument("--json", dest="json_out", default="", help="write the results here")


def make_untrained_checkpoint(robot: str, preset: str, out: Path) -> Path:
    """Latency does not depend on the weights: an untrained checkpoint of the preset."""
    if preset == "default":
        from wam_ros.cli_bench import build_default_checkpoint

        return build_default_checkpoint(out, robot)
    if preset == "tiny":
        from wam_ros.model.testing import make_tiny_checkpoint

        return make_tiny_checkpoint(out, robot)
    raise ValueError(f"unknown preset {preset!r}; allowed: default, tiny")


def policy_parameters(args: argparse.Namespace) -> dict[str, object]:
    """--inference-nice and --policy-param NAME=VALUE as wam_policy parameters (values parsed
    as YAML scalars: 0.5 is a float, true a bool)."""
    from wam_ros.core.settings import policy_overrides

    params = policy_overrides(args.policy_param)
    if args.inference_nice is not None:
        params["inference_nice"] = args.inference_nice
    return params


def _window_fraction(start: dict[str, str], end: dict[str, str]) -> float:
    """idle / observed control time between two reports of the smoother's counters."""
    try:
        observed = float(end["observed_s"]) - float(start["observed_s"])
        idle = float(end["idle_s"]) - float(start["idle_s"])
    except (KeyError, ValueError):
        return float("nan")
    return idle / observed if observed > 0 else float("nan")


def _pct(values, q) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def measure(robot: str, checkpoint: Path, backend: str, memory: str, scheduler: str,
            duration: float, workdir: Path, composed: bool = True,
            policy_params: dict | None = None, realtime_priority: int = 0) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import JointState

    from wam_ros.core.robot import RobotSpec
    from wam_ros.model.checkpoint import read_checkpoint_config
    from wam_ros.nodes import conversions, topics
    from wam_ros.nodes.common import graph_executor, make_executor
    from wam_ros.nodes.process import start_graph_processes
    from wam_ros_msgs.msg import ActionChunk
    from wam_ros_msgs.msg import Observation as ObservationMsg

    spec = RobotSpec.load(robot)
    cfg, _ = read_checkpoint_config(checkpoint)
    h, w = cfg.image_size
    procs = start_graph_processes(workdir, robot, checkpoint, backend=backend, memory=memory,
                                  scheduler=scheduler, composed=composed,
                                  fake_robot={"camera_width": w, "camera_height": h},
                                  policy_params=policy_params,
                                  realtime_priority=realtime_priority)

    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("wam_bench_probe", context=context)
    # the probe spins like the graph: on two cores its own executor's overhead would show
    # up in what it measures
    executor = make_executor(graph_executor(), context=context)
    executor.add_node(node)
    now = time.time  # all processes share the system clock
    obs_rx: dict[int, float] = {}
    raw: dict[int, tuple[float, float, float]] = {}
    joint_rx: list[tuple[int, float]] = []
    commanded: list[tuple[float, np.ndarray]] = []
    policy_stats: dict[str, str] = {}
    smoother_stats: dict[str, str] = {}

    def key(stamp) -> int:
        return stamp.sec * 1_000_000_000 + stamp.nanosec

    node.create_subscription(ObservationMsg, topics.OBSERVATION,
                             lambda m: obs_rx.setdefault(key(m.header.stamp), now()),
                             topics.OBSERVATION_QOS)
    node.create_subscription(
        ActionChunk, topics.CHUNK_RAW,
        lambda m: raw.setdefault(key(m.header.stamp), (now(), m.inference_time,
                                                       m.blocking_time)), topics.CHUNK_QOS)
    node.create_subscription(ActionChunk, topics.CHUNK_JOINT,
                             lambda m: joint_rx.append((key(m.header.stamp), now())),
                             topics.CHUNK_QOS)
    first_command: list[tuple[float, float]] = []  # (plan's observation stamp, command time)

    def on_commanded(m: JointState) -> None:
        t = conversions.to_sec(m.header.stamp)
        commanded.append((t, np.array(m.position)))
        tag = conversions.parse_stamp_tag(m.header.frame_id)
        if tag is not None:
            first_command.append((tag, t))

    node.create_subscription(JointState, topics.COMMANDED, on_commanded, 100)

    def on_diag(msg: DiagnosticArray) -> None:
        for st in msg.status:
            if st.name == "wam_ros/policy":
                policy_stats.update({kv.key: kv.value for kv in st.values})
            elif st.name == "wam_ros/smoother":
                smoother_stats.update({kv.key: kv.value for kv in st.values})

    node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, on_diag, 10)
    try:
        deadline = time.monotonic() + 180.0
        while not joint_rx and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
            if not all(p.alive() for p in procs):
                raise RuntimeError("a node died:\n" + "\n".join(p.output() for p in procs))
        if not joint_rx:
            raise RuntimeError("no chunk within 180 s:\n" + "\n".join(p.output() for p in procs))
        # the smoother's idle counters at the start of the window (it reports once a second)
        smoother_stats.clear()
        while "observed_s" not in smoother_stats and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        idle_start = dict(smoother_stats)
        t_start = now()
        first_chunk = len(joint_rx)
        while now() - t_start < duration:
            executor.spin_once(timeout_sec=0.05)
        smoother_stats.clear()
        end = now() + 2.5  # the last diagnostics of the window
        while now() < end and "observed_s" not in smoother_stats:
            executor.spin_once(timeout_sec=0.05)
        idle_end = dict(smoother_stats)
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
        for p in procs:
            p.stop()

    cmd_t = np.array([c[0] for c in commanded])
    cmd_q = np.array([c[1] for c in commanded])
    first_stamps = np.array([f[0] for f in first_command])
    e2e, overhead, model, wait, stages = [], [], [], [], {k: [] for k in (
        "camera_to_observation", "scheduler_wait", "model", "policy_out", "chunk_to_command")}
    boundary_jumps, boundary_ratios = [], []
    vmax = spec.limits_array("velocity")
    for k, _ in joint_rx[first_chunk:]:
        if k not in raw or k not in obs_rx or not len(first_stamps):
            continue
        t_cam = k * 1e-9
        j = int(np.argmin(np.abs(first_stamps - t_cam)))
        if abs(first_stamps[j] - t_cam) > 2e-6:  # this plan never produced a command
            continue
        t_cmd = first_command[j][1]
        t_raw, inference, blocking = raw[k]
        waited = max(0.0, blocking - inference)
        total = t_cmd - t_cam
        e2e.append(total)
        model.append(inference)
        wait.append(waited)
        overhead.append(total - inference - waited)
        # per stage, as this probe sees it (its own receive times; exact: the stamps)
        stages["camera_to_observation"].append(obs_rx[k] - t_cam)
        stages["scheduler_wait"].append(waited)
        stages["model"].append(inference)
        stages["policy_out"].append(t_raw - (obs_rx[k] + waited + inference))
        stages["chunk_to_command"].append(t_cmd - t_raw)
        i = int(np.searchsorted(cmd_t, t_cmd))
        if 0 < i < len(cmd_t):
            # the step into the plan's first command, against what its interval allows
            jump = np.abs(cmd_q[i] - cmd_q[i - 1])
            interval = max(cmd_t[i] - cmd_t[i - 1], 1e-6)
            boundary_jumps.append(float(jump.max()))
            boundary_ratios.append(float((jump / (vmax * interval)).max()))
    ms = lambda v: [x * 1e3 for x in v]  # noqa: E731
    return {
        "chunks": len(e2e),
        "end_to_end_ms": {"p50": _pct(ms(e2e), 50), "p99": _pct(ms(e2e), 99)},
        "stack_overhead_ms": {"p50": _pct(ms(overhead), 50), "p99": _pct(ms(overhead), 99)},
        "model_ms": {"p50": _pct(ms(model), 50), "p99": _pct(ms(model), 99)},
        "stages_ms_p50": {k: _pct(ms(v), 50) for k, v in stages.items()},
        "stages_ms_p99": {k: _pct(ms(v), 99) for k, v in stages.items()},
        "blocking_latency_ms": {"p50": float(policy_stats.get("blocking_latency_ms.p50", "nan")),
                                "p99": float(policy_stats.get("blocking_latency_ms.p99", "nan"))},
        # the blocking part of the plans by stage: the observation encoder and the context
        # pass, which sai cannot speculate, and the flow steps left after its speculation
        **{f"{part}_ms": {q: float(policy_stats.get(f"{part}_ms.{q}", "nan"))
                          for q in ("p50", "p99")} for part in PLAN_PARTS},
        "idle_fraction": _window_fraction(idle_start, idle_end),
        # the runner's late allowance at the end (chunk_runner.py) and the chunks that came late
        "late_chunks": float(policy_stats.get("late_chunks", "nan")),
        "late_allowance_ms": float(policy_stats.get("late_allowance_ms", "nan")),
        "expected_handoff_ms": float(policy_stats.get("expected_handoff_ms", "nan")),
        "chunk_boundary_max_jump_rad": max(boundary_jumps, default=float("nan")),
        # largest boundary step relative to that joint's velocity limit x the interval to
        # the previous command (<= 1: no jump beyond what that interval allows)
        "chunk_boundary_max_jump_ratio": max(boundary_ratios, default=float("nan")),
    }


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from wam_ros.core.config import ConfigError

    schedulers = [s for s in args.schedulers.split(",") if s]
    try:
        params = policy_parameters(args)
    except ConfigError as exc:
        print(f"error: {exc}")
        return 2
    bad = [s for s in schedulers if s not in SCHEDULERS]
    if bad:
        print(f"error: unknown scheduler {bad[0]!r}; allowed: {', '.join(SCHEDULERS)}")
        return 2
    with tempfile.TemporaryDirectory(prefix="wam_bench_") as tmp:
        workdir = Path(tmp)
        checkpoint = (Path(args.checkpoint) if args.checkpoint else
                      make_untrained_checkpoint(args.robot, args.config, workdir / "ckpt"))
        if args.backend in ("onnxruntime", "tensorrt") and not (checkpoint / "onnx").is_dir():
            from wam_ros.model.export import export_onnx

            if args.checkpoint:  # exported beside a copy: the checkpoint's own dir may be a
                # shipped, read-only one, and the bench leaves no files behind
                checkpoint = Path(shutil.copytree(checkpoint, workdir / "ckpt"))
            export_onnx(checkpoint)
        per = {}
        for s in schedulers:
            print(f"[bench pipeline] {args.robot} {args.backend} {args.memory} {s} "
                  f"({args.graph}): {args.duration:g} s ...", flush=True)
            per[s] = measure(args.robot, checkpoint, args.backend, args.memory, s,
                             args.duration, workdir, composed=args.graph == "composed",
                             policy_params=params or None,
                             realtime_priority=args.realtime_priority)
    ref = per.get("async") or next(iter(per.values()))
    out = {
        "robot": args.robot, "backend": args.backend, "memory": args.memory,
        "graph": args.graph, "inference_nice": args.inference_nice, "policy_params": params,
        "realtime_priority": args.realtime_priority,
        "stack_overhead_ms": ref["stack_overhead_ms"],
        "model_ms": ref["model_ms"],
        "blocking_latency_ms": {s: r["blocking_latency_ms"] for s, r in per.items()},
        **{f"{part}_ms": {s: r[f"{part}_ms"] for s, r in per.items()} for part in PLAN_PARTS},
        "idle_fraction": {s: r["idle_fraction"] for s, r in per.items()},
        "chunk_boundary_max_jump_rad": {s: r["chunk_boundary_max_jump_rad"]
                                        for s, r in per.items()},
        "chunk_boundary_max_jump_ratio": {s: r["chunk_boundary_max_jump_ratio"]
                                          for s, r in per.items()},
        "per_scheduler": per,
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
