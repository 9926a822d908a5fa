"""`wam-ros bench pipeline`: the whole node graph as processes over DDS, per scheduler.

Fake robot (3 cameras at 30 Hz: at the model resolution, or with `--graph launched` at the
robot's own size, 640x480, resized by the observation node) -> observation -> policy -> decoder ->
smoother -> controllers, with a probe node in this process that timestamps every stage. For each
chunk: camera stamp -> observation out -> (wait for the scheduler) -> model -> raw chunk out ->
decoded chunk out -> first command after it. stack overhead = end-to-end - model compute - the
scheduler's wait, from the camera stamp; graph overhead = the same from the moment the set's
last frame reached the observation node (Observation.received), chunk by chunk: the part the
graph itself adds on top of the cameras' own transport (driver, DDS). Blocking latency and
its parts (encoder, context pass, flow steps: `<part>_ms`) come from the policy node's runner
statistics; the idle fraction (share of control time the arm held for lack of a plan) from the
smoother's, over the measured window only (/diagnostics).

`--driver-priority` runs the fake robot (the cameras' drivers and the controllers) SCHED_FIFO at
the priorities given, in alternating rounds (default 0: normal scheduling, as a driver runs
unless its integrator raises it); each run records how the fake robot ran (driver_scheduling).

`--graph cameras` runs no graph: the fake robot's robot-size frames go to a bare subscriber
in the probe, the floor under every graph's camera -> observation stage, measured in the same
alternating rounds.

`--graph launched` is what `ros2 launch` starts by default: the NodeSpecs of graph.build_graph
as separate processes, with no parameter the launch files would not give (the observation node
sizes its output from the policy's input contract), and the Fast DDS profile the launch files
apply (graph.dds_environment). Camera throughput comes with every run: observation sets/s the
observation node assembled, frames the fake robot sent, frames that reached the observation
node, frames its synchroniser dropped (/diagnostics of both). `--dds-profile none` runs every
process with Fast DDS's defaults (FASTDDS_DEFAULT_PROFILES_FILE unset: 512 KiB shared-memory
segment), `graph-only` the graph with the launch's profile and the cameras without (camera
drivers started outside the launch). The processes stay in this process's session, as ros2
launch leaves its nodes (`--sessions own`: each in a session of its own, as the bench did
before; Linux then shares the CPU per process before nice values apply, so the policy's
lowered inference threads no longer yield to the other nodes). Several graphs / profiles /
sessions in one run are measured in alternating rounds (`--rounds`), so load from elsewhere
falls on all of them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from wam_ros.core.settings import RT_PRIORITY_DEFAULT, RT_PRIORITY_MAX, SCHEDULERS
from wam_ros.runtime.chunk_runner import PLAN_PARTS

# cameras: no graph, the fake robot's frames to a bare subscriber in the probe (the floor
# under every graph: what the camera driver and DDS take before any node of ours runs)
GRAPHS = ("composed", "processes", "launched", "cameras")
CAMERA_SIZES = ("model", "robot")
# launch: what the launch files give every process (graph.dds_environment: the shipped profile
# unless FASTDDS_DEFAULT_PROFILES_FILE is set); none: Fast DDS defaults everywhere; graph-only:
# the launch's profile for the graph, defaults for the cameras
DDS_PROFILES = ("launch", "none", "graph-only")
SESSIONS = ("launch", "own")
PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
FASTRTPS_ENV = "FASTRTPS_DEFAULT_PROFILES_FILE"  # the name Fast DDS 2 (Humble, Jazzy) reads


def make_untrained_checkpoint(robot: str, preset: str, out: Path) -> Path:
    """Latency does not depend on the weights: an untrained checkpoint of the preset."""
    if preset == "default":
        from wam_ros.apps.bench_model import build_default_checkpoint

        return build_default_checkpoint(out, robot)
    if preset == "tiny":
        from wam_ros.testing.checkpoints import make_tiny_checkpoint

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


def dds_env(profile: str) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """(graph's, cameras') Fast DDS environment for a --dds-profile choice; None unsets (both
    names: Fast DDS 3 reads FASTDDS_, Fast DDS 2 FASTRTPS_DEFAULT_PROFILES_FILE)."""
    from wam_ros.bringup.graph import dds_environment

    names = (PROFILE_ENV, FASTRTPS_ENV)
    launch: dict[str, str | None] = {**{k: os.environ.get(k) for k in names},
                                     **dds_environment()}
    unset: dict[str, str | None] = dict.fromkeys(names)
    return {"launch": (launch, launch), "none": (unset, unset),
            "graph-only": (launch, unset)}[profile]


@contextmanager
def _environment(env: dict[str, str | None]):
    """os.environ with `env` applied (None removes) while child processes start: they copy
    it at their start."""
    saved = {k: os.environ.get(k) for k in env}
    try:
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def scheduling(pid: int) -> str:
    """How a process's main thread is scheduled: "SCHED_FIFO <priority>" or "SCHED_OTHER"."""
    from wam_ros.runtime.threads import realtime_priority

    priority = realtime_priority(pid)
    return f"SCHED_FIFO {priority}" if priority else "SCHED_OTHER"


def start_processes(workdir: Path, robot: str, checkpoint: Path, *, backend: str,
                    memory: str, scheduler: str, composed: bool, camera_size: str,
                    image_size: tuple[int, int], dds_profile: str, sessions: str,
                    policy_params: dict | None, realtime_priority: int, tag: str,
                    driver_priority: int = 0) -> list:
    """The fake robot and the graph as the launch files start it (graph.build_graph's
    NodeSpecs, each its own process, or the composed bringup), each process with its Fast DDS
    environment; logs in `workdir`. The fake robot runs SCHED_FIFO at `driver_priority`
    (0: normal scheduling)."""
    from wam_ros.bringup.graph import GraphArgs, NodeSpec, build_graph, realtime_environment
    from wam_ros.testing.process import NodeProcess, policy_params_file

    params = policy_params_file(workdir / f"params_{tag}.yaml", policy_params)
    graph = build_graph(GraphArgs(robot=robot, checkpoint=str(checkpoint), backend=backend,
                                  memory=memory, scheduler=scheduler, params_file=params,
                                  composed=composed, realtime_priority=realtime_priority))
    h, w = image_size
    cameras = ({"camera_scale": 1.0} if camera_size == "robot" else
               {"camera_width": w, "camera_height": h})
    fake = NodeSpec("wam_fake_robot", "", "wam_ros.nodes.fake_robot", {"robot": robot, **cameras})
    graph_env, camera_env = dds_env(dds_profile)
    own = sessions == "own"
    procs = []
    try:
        with _environment(camera_env):
            procs.append(NodeProcess(fake.command(), env=realtime_environment(driver_priority),
                                     log_path=str(workdir / f"{tag}_fake.log"),
                                     own_session=own))
        with _environment(graph_env):
            for spec in graph:
                procs.append(NodeProcess(spec.command(), env=spec.env,
                                         log_path=str(workdir / f"{tag}_{spec.name}.log"),
                                         own_session=own))
    except BaseException:
        for p in procs:
            p.stop()
        raise
    return procs


def measure_cameras(robot: str, duration: float, workdir: Path, dds_profile: str = "launch",
                    sessions: str = "launch", tag: str = "", driver_priority: int = 0) -> dict:
    """The camera transport alone: the fake robot's cameras to raw subscriptions in this
    process that read only each frame's stamp (no decoding, no resize, no node of ours), with
    the Fast DDS environment of `dds_profile`, after 5 s of discovery and warm-up. Per frame
    and per set (a set is there when its last camera's frame is: what the observation node
    waits for before it can assemble one), camera stamp -> receipt."""
    import rclpy
    from sensor_msgs.msg import Image

    from wam_ros.bringup.graph import NodeSpec, realtime_environment
    from wam_ros.core.robot import RobotSpec
    from wam_ros.nodes import conversions, topics
    from wam_ros.nodes.common import graph_executor, make_executor
    from wam_ros.testing.process import NodeProcess

    spec = RobotSpec.load(robot)
    fake = NodeSpec("wam_fake_robot", "", "wam_ros.nodes.fake_robot",
                    {"robot": robot, "camera_scale": 1.0})
    _, camera_env = dds_env(dds_profile)
    with _environment(camera_env):
        proc = NodeProcess(fake.command(), env=realtime_environment(driver_priority),
                           log_path=str(workdir / f"{tag}_fake.log"),
                           own_session=sessions == "own")
    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("wam_bench_camera_probe", context=context)
    executor = make_executor(graph_executor(), context=context)  # as the graph's nodes spin
    executor.add_node(node)
    arrivals: dict[int, list[float]] = {}  # stamp (ns) -> receipt - stamp, per camera

    def on_frame(raw: bytes) -> None:
        now = time.time()
        stamp = conversions.image_from_cdr(raw).header.stamp
        ns = stamp.sec * 1_000_000_000 + stamp.nanosec
        arrivals.setdefault(ns, []).append(now - ns * 1e-9)

    for cam in spec.cameras:
        node.create_subscription(Image, topics.robot_topic(cam.topic), on_frame,
                                 topics.SENSOR_QOS, raw=True)
    try:
        for window in (5.0, duration):  # discovery and warm-up, then the measured window
            arrivals.clear()
            cpu0 = _cpu_seconds(proc.proc.pid)
            end = time.time() + window
            while time.time() < end:
                executor.spin_once(timeout_sec=0.05)
                if not proc.alive():
                    raise RuntimeError("the fake robot died:\n" + proc.output())
        cpu = (_cpu_seconds(proc.proc.pid) - cpu0) / duration * 1e3
        driver = scheduling(proc.proc.pid)
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
        proc.stop()
    frames = [d for per_set in arrivals.values() for d in per_set]
    sets = [max(per_set) for per_set in arrivals.values() if len(per_set) == len(spec.cameras)]
    ms = lambda v: [x * 1e3 for x in v]  # noqa: E731
    return {
        "driver_scheduling": driver,
        "frames_per_s": len(frames) / duration,
        "sets_per_s": len(sets) / duration,
        "expected_sets_per_s": spec.cameras[0].rate_hz,
        "frame_arrival_ms": {"p50": _pct(ms(frames), 50), "p99": _pct(ms(frames), 99)},
        "set_arrival_ms": {"p50": _pct(ms(sets), 50), "p99": _pct(ms(sets), 99)},
        "cpu_ms_per_s": {"fake": round(cpu, 1)},
    }


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process used so far; nan once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _camera_window(start: dict[str, tuple[float, dict[str, str]]],
                   end: dict[str, tuple[float, dict[str, str]]], cameras: list[str],
                   in_sets: list[str], rate_hz: float) -> dict[str, float]:
    """Camera throughput between two reports of the fake robot's and the observation node's
    counters: frames sent, frames that reached the observation node, frames its synchroniser
    dropped, sets it assembled (each a rate over its own node's report interval)."""
    def rate(name: str, keys: list[str]) -> float:
        if name not in start or name not in end:
            return float("nan")
        (t0, v0), (t1, v1) = start[name], end[name]
        try:  # a counter not reported yet is 0 (the synchroniser's appear on first use)
            n = sum(float(v1.get(k, 0)) - float(v0.get(k, 0)) for k in keys)
        except ValueError:
            return float("nan")
        return n / (t1 - t0) if t1 > t0 else float("nan")

    obs = "wam_ros/observation"
    dropped = sorted(k for k in end.get(obs, (0.0, {}))[1] if k.startswith("dropped_"))
    sent = rate("wam_ros/fake_robot", [f"published.{c}" for c in cameras])
    received = sum(rate(f"{obs}/{c}", ["received"]) for c in cameras)
    received_in_sets = sum(rate(f"{obs}/{c}", ["received"]) for c in in_sets)
    sets = rate(obs, ["published"])
    return {
        "expected_sets_per_s": rate_hz,
        "sets_per_s": sets,
        "frames_sent_per_s": sent,
        "frames_received_per_s": received,
        # share of the frames sent that never reached the observation node (DDS)
        "frames_lost_fraction": 1.0 - received / sent if sent > 0 else float("nan"),
        "frames_dropped_by_sync_per_s": rate(obs, dropped) if dropped else 0.0,
        # frames that reached the node but are in no set (late / out of step with the others)
        "frames_unused_fraction": 1.0 - sets * len(in_sets) / received_in_sets
        if received_in_sets > 0 else float("nan"),
    }


def measure(robot: str, checkpoint: Path, backend: str, memory: str, scheduler: str,
            duration: float, workdir: Path, composed: bool = True,
            policy_params: dict | None = None,
            realtime_priority: int = RT_PRIORITY_DEFAULT,
            camera_size: str = "model", dds_profile: str = "launch", sessions: str = "launch",
            tag: str = "", driver_priority: int = 0) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import JointState, TimeReference

    from wam_ros.core.robot import RobotSpec
    from wam_ros.model.checkpoint import read_checkpoint_config
    from wam_ros.nodes import conversions, topics
    from wam_ros.nodes.common import graph_executor, make_executor
    from wam_ros_msgs.msg import ActionChunk
    from wam_ros_msgs.msg import Observation as ObservationMsg

    spec = RobotSpec.load(robot)
    cfg, _ = read_checkpoint_config(checkpoint)
    run_tag = tag or scheduler
    procs = start_processes(workdir, robot, checkpoint, backend=backend, memory=memory,
                            scheduler=scheduler, composed=composed, camera_size=camera_size,
                            image_size=tuple(cfg.image_size), dds_profile=dds_profile,
                            sessions=sessions,
                            policy_params=policy_params, realtime_priority=realtime_priority,
                            tag=run_tag, driver_priority=driver_priority)

    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("wam_bench_probe", context=context)
    # the probe spins like the graph: on two cores its own executor's overhead would show
    # up in what it measures
    executor = make_executor(graph_executor(), context=context)
    executor.add_node(node)
    now = time.time  # all processes share the system clock
    obs_rx: dict[int, float] = {}
    # set stamp -> when its last frame reached the observation node (Observation.received)
    frames_in: dict[int, float] = {}
    raw: dict[int, tuple[float, float, float]] = {}
    joint_rx: list[tuple[int, float]] = []
    commanded: list[tuple[float, np.ndarray]] = []
    policy_stats: dict[str, str] = {}
    smoother_stats: dict[str, str] = {}
    # camera counters: status name -> (report stamp, values), the latest report
    counters: dict[str, tuple[float, dict[str, str]]] = {}
    obs_count = [0]

    def key(stamp) -> int:
        return stamp.sec * 1_000_000_000 + stamp.nanosec

    def on_observation(m: ObservationMsg) -> None:
        obs_count[0] += 1
        obs_rx.setdefault(key(m.header.stamp), now())
        frames_in.setdefault(key(m.header.stamp), conversions.to_sec(m.received))

    node.create_subscription(ObservationMsg, topics.OBSERVATION, on_observation,
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
        commanded.append((conversions.to_sec(m.header.stamp), np.array(m.position)))

    node.create_subscription(JointState, topics.COMMANDED, on_commanded, 100)
    node.create_subscription(
        TimeReference, topics.PLAN_STARTED,
        lambda m: first_command.append((conversions.to_sec(m.time_ref),
                                        conversions.to_sec(m.header.stamp))),
        topics.APPLIED_QOS)

    camera_names = [c.name for c in spec.cameras]  # the fake robot sends every one
    counted = {"wam_ros/fake_robot", "wam_ros/observation",
               *(f"wam_ros/observation/{c}" for c in camera_names)}

    def on_diag(msg: DiagnosticArray) -> None:
        for st in msg.status:
            if st.name in counted:
                counters[st.name] = (conversions.to_sec(msg.header.stamp),
                                     {kv.key: kv.value for kv in st.values})
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
        # the smoother's idle counters and the camera counters at the start of the window
        # (each node reports once a second; the observation node's first report after its
        # first set)
        smoother_stats.clear()
        counters.clear()
        while time.monotonic() < deadline and not (
                "observed_s" in smoother_stats and counted <= counters.keys()
                and "published" in counters["wam_ros/observation"][1]):
            executor.spin_once(timeout_sec=0.05)
        idle_start = dict(smoother_stats)
        counters_start = dict(counters)
        driver = scheduling(procs[0].proc.pid)  # the fake robot is set up by now
        cpu_start = [_cpu_seconds(p.proc.pid) for p in procs]
        t_start = now()
        first_chunk = len(joint_rx)
        obs_start = obs_count[0]
        while now() - t_start < duration:
            executor.spin_once(timeout_sec=0.05)
        observations = obs_count[0] - obs_start
        # CPU each process used over the window: where the two cores went, whatever the load
        elapsed = now() - t_start
        cpu_ms_per_s = {Path(p.log_path).stem[len(run_tag) + 1:]:  # <tag>_<node>.log
                        round((_cpu_seconds(p.proc.pid) - c0) / elapsed * 1e3, 1)
                        for p, c0 in zip(procs, cpu_start)}
        smoother_stats.clear()
        counters.clear()
        end = now() + 5.0  # the last diagnostics of the window (1 s apart; late when loaded)
        while now() < end and ("observed_s" not in smoother_stats
                               or not counted <= counters.keys()):
            executor.spin_once(timeout_sec=0.05)
        idle_end = dict(smoother_stats)
        counters_end = dict(counters)
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
        for p in procs:
            p.stop()

    cmd_t = np.array([c[0] for c in commanded])
    cmd_q = np.array([c[1] for c in commanded])
    first_stamps = np.array([f[0] for f in first_command])
    e2e, overhead, graph_overhead, model, wait, stages = [], [], [], [], [], {k: [] for k in (
        "camera_to_observation", "camera_transport", "scheduler_wait", "model", "policy_out",
        "chunk_to_command")}
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
        # the same, from the moment the set's last frame reached the graph: what the stack
        # adds on top of the cameras' own transport (driver, DDS), chunk by chunk
        transport = frames_in[k] - t_cam
        graph_overhead.append(total - inference - waited - transport)
        stages["camera_transport"].append(transport)
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
    cameras = _camera_window(counters_start, counters_end, camera_names,
                             [c for c in camera_names if c in cfg.camera_names],
                             spec.cameras[0].rate_hz)
    cameras["probe_sets_per_s"] = observations / duration  # what reached this probe
    return {
        "cameras": cameras,
        "driver_scheduling": driver,
        "cpu_ms_per_s": cpu_ms_per_s,
        "chunks": len(e2e),
        "end_to_end_ms": {"p50": _pct(ms(e2e), 50), "p99": _pct(ms(e2e), 99)},
        "stack_overhead_ms": {"p50": _pct(ms(overhead), 50), "p99": _pct(ms(overhead), 99)},
        "graph_overhead_ms": {"p50": _pct(ms(graph_overhead), 50),
                              "p99": _pct(ms(graph_overhead), 99)},
        # chunk by chunk (ms, in arrival order): pooled over the rounds in by_variant
        "samples_ms": {"stack_overhead": [round(x, 3) for x in ms(overhead)],
                       "graph_overhead": [round(x, 3) for x in ms(graph_overhead)]},
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


def _summary(per: dict[str, dict]) -> dict:
    """One graph x profile: the figures of the async run (else the first), and per scheduler."""
    ref = per.get("async") or next(iter(per.values()))
    return {
        "stack_overhead_ms": ref["stack_overhead_ms"],
        "graph_overhead_ms": ref["graph_overhead_ms"],
        "model_ms": ref["model_ms"],
        "cameras": ref["cameras"],
        "driver_scheduling": ref["driver_scheduling"],
        "blocking_latency_ms": {s: r["blocking_latency_ms"] for s, r in per.items()},
        **{f"{part}_ms": {s: r[f"{part}_ms"] for s, r in per.items()} for part in PLAN_PARTS},
        "idle_fraction": {s: r["idle_fraction"] for s, r in per.items()},
        "chunk_boundary_max_jump_rad": {s: r["chunk_boundary_max_jump_rad"]
                                        for s, r in per.items()},
        "chunk_boundary_max_jump_ratio": {s: r["chunk_boundary_max_jump_ratio"]
                                          for s, r in per.items()},
        "per_scheduler": per,
    }


def _choices(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    values = [v for v in text.split(",") if v]
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise ValueError(f"unknown {what} {(bad or [text])[0]!r}; allowed: {', '.join(allowed)}")
    return values


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from wam_ros.nodes.common import keep_freed_memory

    # the probe takes frames (--graph cameras) and observations as the nodes do: with their
    # memory set-up, or its own page faults would be part of what it measures
    keep_freed_memory()
    from wam_ros.core.config import ConfigError

    try:
        params = policy_parameters(args)
    except ConfigError as exc:
        print(f"error: {exc}")
        return 2
    try:
        schedulers = _choices(args.schedulers, SCHEDULERS, "scheduler")
        graphs = _choices(args.graph, GRAPHS, "graph")
        profiles = _choices(args.dds_profile, DDS_PROFILES, "DDS profile")
        session_kinds = _choices(args.sessions, SESSIONS, "sessions")
        priorities = [int(p) for p in _choices(
            args.realtime_priority, tuple(map(str, range(RT_PRIORITY_MAX + 1))),
            "realtime priority")]
        drivers = [int(p) for p in _choices(
            args.driver_priority, tuple(map(str, range(RT_PRIORITY_MAX + 1))),
            "driver priority")]
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    if "cameras" in graphs and args.cameras == "model":
        print("error: --graph cameras measures the robot's own cameras; allowed with it: "
              "--cameras robot")
        return 2
    if args.rounds < 1:
        print(f"error: --rounds {args.rounds}; allowed: 1 or more")
        return 2
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(),
               "load_average_1min_start": round(os.getloadavg()[0], 2),
               "fastdds_profiles_file": os.environ.get(PROFILE_ENV, ""),
               "fastrtps_profiles_file": os.environ.get(FASTRTPS_ENV, "")}
    runs = []
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
        for rnd, (graph, profile, sessions, priority, driver) in itertools.product(
                range(args.rounds), itertools.product(graphs, profiles, session_kinds,
                                                      priorities, drivers)):
            cameras = args.cameras or ("robot" if graph in ("launched", "cameras") else "model")
            if graph == "cameras":
                if priority != priorities[0]:  # no graph: its priority changes nothing
                    continue
                print(f"[bench pipeline] round {rnd + 1}/{args.rounds} cameras alone (DDS "
                      f"profile {profile}, sessions {sessions}, driver priority {driver}) "
                      f"{args.robot}: {args.duration:g} s ...", flush=True)
                runs.append({"graph": graph, "camera_size": cameras, "dds_profile": profile,
                             "sessions": sessions, "realtime_priority": 0,
                             "driver_priority": driver, "round": rnd + 1,
                             "camera_transport": measure_cameras(
                                 args.robot, args.duration, workdir, profile, sessions,
                                 tag=f"r{rnd}_cameras_{profile}_d{driver}",
                                 driver_priority=driver)})
                continue
            per = {}
            for s in schedulers:
                print(f"[bench pipeline] round {rnd + 1}/{args.rounds} {graph} (cameras "
                      f"{cameras}, DDS profile {profile}, sessions {sessions}, realtime "
                      f"priority {priority}) {args.robot} {args.backend} {args.memory} {s}, "
                      f"driver priority {driver}: {args.duration:g} s ...", flush=True)
                per[s] = measure(args.robot, checkpoint, args.backend, args.memory, s,
                                 args.duration, workdir, composed=graph == "composed",
                                 policy_params=params or None,
                                 realtime_priority=priority,
                                 camera_size=cameras, dds_profile=profile, sessions=sessions,
                                 tag=f"r{rnd}_{graph}_{profile}_rt{priority}_d{driver}_{s}",
                                 driver_priority=driver)
            runs.append({"graph": graph, "camera_size": cameras, "dds_profile": profile,
                         "sessions": sessions, "realtime_priority": priority,
                         "driver_priority": driver, "round": rnd + 1, **_summary(per)})
    machine["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    # the first graph's figures at the top (the cameras alone have none of them)
    first = next((r for r in runs if r["graph"] != "cameras"), {})
    # each graph x profile across the rounds (async, else the first scheduler)
    by_variant: dict[str, dict] = {}
    pooled: dict[str, dict[str, list[float]]] = {}
    for r in runs:
        name = f"{r['graph']}/{r['dds_profile']}" + (
            f"/sessions-{r['sessions']}" if len(session_kinds) > 1 else "") + (
            f"/rt-{r['realtime_priority']}" if len(priorities) > 1 and r["graph"] != "cameras"
            else "") + (f"/driver-{r['driver_priority']}" if len(drivers) > 1 else "")
        if r["graph"] == "cameras":
            v = by_variant.setdefault(name, {"set_arrival_ms_p50": [], "set_arrival_ms_p99": [],
                                             "frame_arrival_ms_p99": [], "sets_per_s": []})
            t = r["camera_transport"]
            v["set_arrival_ms_p50"].append(t["set_arrival_ms"]["p50"])
            v["set_arrival_ms_p99"].append(t["set_arrival_ms"]["p99"])
            v["frame_arrival_ms_p99"].append(t["frame_arrival_ms"]["p99"])
            v["sets_per_s"].append(t["sets_per_s"])
            continue
        v = by_variant.setdefault(name, {
            "stack_overhead_ms_p50": [], "stack_overhead_ms_p99": [],
            "graph_overhead_ms_p50": [], "graph_overhead_ms_p99": [], "sets_per_s": [],
            "frames_lost_fraction": [], "camera_to_observation_ms_p99": []})
        for figure in ("stack_overhead_ms", "graph_overhead_ms"):
            v[f"{figure}_p50"].append(r[figure]["p50"])
            v[f"{figure}_p99"].append(r[figure]["p99"])
        v["sets_per_s"].append(r["cameras"]["sets_per_s"])
        v["frames_lost_fraction"].append(r["cameras"]["frames_lost_fraction"])
        ref = r["per_scheduler"].get("async") or next(iter(r["per_scheduler"].values()))
        v["camera_to_observation_ms_p99"].append(ref["stages_ms_p99"]["camera_to_observation"])
        for part, values in ref["samples_ms"].items():
            pooled.setdefault(name, {}).setdefault(part, []).extend(values)
    # every chunk of every round of a variant: a round's 99th percentile of a few hundred
    # chunks is one of its few largest values and sways with them; the rounds together give
    # the steadier estimate (the per-round figures stay above)
    for name, parts in pooled.items():
        for part, values in parts.items():
            by_variant[name][f"{part}_ms_all_rounds"] = {
                "chunks": len(values), "p50": _pct(values, 50), "p99": _pct(values, 99)}
    out = {
        "robot": args.robot, "backend": args.backend, "memory": args.memory,
        "graph": args.graph, "dds_profile": args.dds_profile, "sessions": args.sessions,
        "rounds": args.rounds,
        "inference_nice": args.inference_nice, "policy_params": params,
        "realtime_priority": priorities, "driver_priority": drivers,
        "duration_s": args.duration,
        "machine": machine,
        # the first run's figures at the top (one graph, one profile: the only run)
        **{k: v for k, v in first.items() if k not in ("graph", "dds_profile", "sessions",
                                                        "realtime_priority", "driver_priority",
                                                        "round")},
        "by_variant": by_variant,
        "runs": runs,
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    return 0
