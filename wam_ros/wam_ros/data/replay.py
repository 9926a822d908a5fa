"""Offline bag replay: a recorded episode through the policy on a simulated clock (`wam-ros
replay BAG --checkpoint CKPT`), compared with the actions the operator recorded.

The runtime is the robot's: observations are built like the observation node builds them
(core.image.prepare_image + core.sync.ApproximateSync, settings from config/wam_ros.yaml), and
from there on it is runtime.stack.SimulatedStack: the policy node's ChunkRunner and scheduler,
the decoder and the smoother's CommandPipeline on a simulated clock. Events happen at the bag's
own times (message arrival = bag timestamp), and an inference handed out at time t finishes at
t + `latency_ms` of simulated time, whatever it took on this machine. With a fixed latency the
replay is deterministic (same bag, checkpoint and options -> same chunks); the time each
inference really took is reported as `latency_ms.p50` / `.p99`.

Metrics, in action units (joints rad / m, grippers normalised 0..1), against the recorded
action (the teleop command at the same time; a bag without teleop topics falls back to where
the follower went, state at t + dt):
  action_mse, per_joint_mae      every action of every chunk at its own time
  horizon_mae[k]                 mean abs error of the k-th action of the chunks
  boundary_mae                   error of each chunk's first executed action (at the splice)
  boundary_jump.mean / .max      how far a new chunk started from the plan it replaced
  executed_mae                   the pipeline's commands (what the robot would have done)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wam_ros.core.image import message_to_rgb, prepare_image
from wam_ros.core.robot import RobotSpec
from wam_ros.core.settings import PolicySettings
from wam_ros.core.types import Observation
from wam_ros.data.bag_reader import open_bag
from wam_ros.data.cdr import deserialize, header_stamp_ns
from wam_ros.data.convert import _interp, _read_streams, camera_topics
from wam_ros.data.follower import FollowerStates
from wam_ros.data.run_video import overlay_lines
from wam_ros.data.teleop import LeaderMap
from wam_ros.runtime.stack import StackTrace


@dataclass(frozen=True)
class ReplayOptions:
    scheduler: str = PolicySettings.scheduler
    memory: str = PolicySettings.memory
    mode: str = PolicySettings.mode
    backend: str = PolicySettings.backend
    flow_steps: int = PolicySettings.flow_steps
    noise_scale: float = PolicySettings.noise_scale  # < 0: the checkpoint's
    latency_ms: float = 100.0  # simulated inference latency; <= 0: the measured one
    task: str = ""  # empty: the bag's task
    device: str = "cpu"
    include_partial: bool = True
    seed: int = 0


class Recorded:
    """The recorded action as a function of time (action units)."""

    def __init__(self, times: np.ndarray, actions: np.ndarray) -> None:
        self.times, self.actions = times, actions

    def __call__(self, t: np.ndarray) -> np.ndarray:
        return _interp(np.asarray(t, np.float64), self.times, self.actions)

    def covers(self, t: np.ndarray) -> np.ndarray:
        return (t >= self.times[0]) & (t <= self.times[-1])


def recorded_actions(bag: Any, spec: RobotSpec, cams: dict[str, str]) -> tuple[Recorded, str]:
    leader_map = LeaderMap(spec) if spec.teleop is not None else None
    teleop = leader_map is not None and all(s.topic in bag.topics for s in leader_map.sources)
    streams = _read_streams(bag, spec, cams, leader_map if teleop else None)
    if len(streams.follower_t) < 2:
        raise ValueError(f"{bag.path}: fewer than two follower joint states")
    state = spec.joint_to_action(streams.follower_q)
    if not teleop:
        dt = spec.action_dt
        return Recorded(streams.follower_t - dt, state), "follower"
    # the leader streams on their union of times, follower interpolated for delta sources
    times = np.unique(np.concatenate([t for t, _ in streams.leaders.values()]))
    follower = spec.joint_to_action(_interp(times, streams.follower_t, streams.follower_q))
    values = {k: _interp(times, t, v) for k, (t, v) in streams.leaders.items()}
    actions = np.stack([leader_map.to_action({k: v[i] for k, v in values.items()},  # type: ignore[union-attr]
                                             follower[i]) for i in range(len(times))])
    return Recorded(times, leader_map.clip(actions)), "teleop"  # type: ignore[union-attr]


def replay_episode(bag_path: str | Path, policy: Any, options: ReplayOptions,
                   log: Callable[[str], None] = print, video: Any = None
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """One bag through the policy; (metrics, trace for the plot). `video`
    (data.run_video.RunVideo): a frame of the cameras at every observation, with the time and
    the newest plan's latency."""
    from wam_ros.core.settings import ObservationSettings, settings_from
    from wam_ros.core.sync import ApproximateSync
    from wam_ros.runtime.stack import SimulatedStack, node_params

    bag = open_bag(bag_path, include_partial=options.include_partial)
    meta = policy.meta
    spec = RobotSpec.load(meta.robot)
    robot = bag.custom.get("robot")
    if robot and robot != spec.name:
        raise ValueError(f"{bag_path}: recorded on {robot}, the checkpoint is for {spec.name}")
    cams = camera_topics(spec, bag.topics)
    missing = [c for c in meta.camera_names if c not in cams]
    if missing:
        raise ValueError(f"{bag_path}: cameras {missing} are not in the bag")
    recorded, source = recorded_actions(bag, spec, cams)
    task = options.task or bag.custom.get("task", "")

    obs_s = settings_from(ObservationSettings, node_params("wam_observation"), robot=spec.name)
    policy.reset()
    stack = SimulatedStack(policy, spec, scheduler=options.scheduler,
                           latency_s=options.latency_ms * 1e-3 if options.latency_ms > 0
                           else None, log=log)
    h, w = meta.image_size
    sync = ApproximateSync(meta.camera_names, obs_s.slop_s, obs_s.max_age_s, obs_s.joint_slop_s,
                           extrapolate=obs_s.joint_extrapolate)
    cam_of = {cams[c]: c for c in meta.camera_names}
    measured: list[np.ndarray | None] = [None]  # the newest follower joint state
    sequence = 0

    def measure(_now: float) -> np.ndarray | None:
        # the pipeline starts from where the follower was; after that the bag's follower
        # does not react to the replayed commands, so it is not compared with them
        return None if stack.commanding else measured[0]

    wall0 = time.perf_counter()
    first = last = None
    observations = 0
    follower = FollowerStates(spec, bag.topics)  # ours, or AgileX's /puppet/joint_left|right
    for m in bag.messages(set(cam_of) | follower.topics):
        now = m.timestamp * 1e-9
        if first is None:
            first = now
            stack.start(now)
        last = now
        stack.advance(now, measure)
        stamp = (header_stamp_ns(m.data, m.msgtype) or m.timestamp) * 1e-9
        if m.topic in follower.topics:
            q = follower.update(m.topic, deserialize(m.data, m.msgtype))
            if q is None:
                continue
            measured[0] = q
            sync.add_joint_state(stamp, q, now)
            stack.joint_state(now)
        else:
            try:
                rgb = message_to_rgb(deserialize(m.data, m.msgtype))
            except Exception:  # an undecodable frame is skipped, as the observation node does
                continue
            sync.add_frame(cam_of[m.topic], stamp,
                           prepare_image(rgb, h, w, obs_s.resize_mode), now)
        synced = sync.poll(now)
        if synced is not None:
            obs = Observation(synced.stamp, synced.images, synced.joint_positions, task=task,
                              sequence=sequence)
            sequence += 1
            observations += 1
            stack.runner.on_observation(obs, now)
            if video is not None:
                latency = stack.trace.plan_latency[-1][1] * 1e3 if stack.trace.plan_latency \
                    else None
                video.add([synced.images[c] for c in meta.camera_names],
                          overlay_lines(Path(bag_path).name, now - first, "", latency))
    if first is None:
        raise ValueError(f"{bag_path}: no camera or joint state messages")
    stack.advance(last + 1e-9, measure)
    wall = time.perf_counter() - wall0
    duration = last - first
    trace = stack.trace
    metrics = _metrics(trace, recorded, spec, meta.horizon)
    stats = stack.runner.stats()
    metrics.update({
        "bag": str(bag_path), "task": task, "action_source": source,
        "duration_s": duration, "wall_s": wall,
        "speed_x": duration / wall if wall > 0 else float("inf"),
        "observations": observations, "chunks": len(trace.chunks),
        "rejected_chunks": trace.rejected,
        "idle_fraction": float(stats.get("idle_fraction", 0.0)),
        "latency_ms.p50": _pct(trace.compute_ms, 50), "latency_ms.p99": _pct(trace.compute_ms, 99),
    })
    plot = {"recorded": recorded, "chunks": trace.chunks, "executed_t": trace.executed_t,
            "executed_q": trace.executed_q, "start": first, "end": last}
    return metrics, plot


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def _metrics(trace: StackTrace, recorded: Recorded, spec: RobotSpec, horizon: int
             ) -> dict[str, Any]:
    names = list(spec.action_layout)
    errors, by_step = [], [[] for _ in range(horizon)]
    for times, actions in trace.chunks:
        inside = recorded.covers(times)
        if not inside.any():
            continue
        err = actions[inside] - recorded(times[inside])  # (h, D)
        errors.append(err)
        for k, e in zip(np.flatnonzero(inside), err):
            if k < horizon:
                by_step[k].append(np.abs(e).mean())
    out: dict[str, Any] = {}
    if errors:
        e = np.concatenate(errors)
        out["action_mse"] = float(np.mean(e ** 2))
        out["per_joint_mae"] = {n: float(v) for n, v in zip(names, np.abs(e).mean(0))}
        out["_errors"] = e
    else:
        out["action_mse"] = float("nan")
        out["per_joint_mae"] = {n: float("nan") for n in names}
        out["_errors"] = np.zeros((0, len(names)))
    out["horizon_mae"] = [float(np.mean(s)) if s else float("nan") for s in by_step]
    firsts = [(t, a) for t, a in trace.first_action if recorded.covers(np.array([t]))[0]]
    out["boundary_mae"] = (float(np.mean([np.abs(a - recorded(np.array([t]))[0]).mean()
                                          for t, a in firsts])) if firsts else float("nan"))
    jumps = trace.boundary_jumps
    out["boundary_jump.mean"] = float(np.mean(jumps)) if jumps else 0.0
    out["boundary_jump.max"] = float(np.max(jumps)) if jumps else 0.0
    if trace.executed_t:
        t = np.asarray(trace.executed_t)
        inside = recorded.covers(t)
        q = np.asarray(trace.executed_q)[inside]
        out["executed_mae"] = (float(np.abs(q - recorded(t[inside])).mean()) if inside.any()
                               else float("nan"))
    else:
        out["executed_mae"] = float("nan")
    return out


def replay(bags: list[str | Path], checkpoint: str | Path, options: ReplayOptions,
           json_path: str | Path | None = None, plot_path: str | Path | None = None,
           log: Callable[[str], None] = print,
           video_dir: str | Path | None = None) -> dict[str, Any]:
    """Every bag through one policy (reset between episodes); the report written as JSON;
    `video_dir`: one mp4 per bag (<bag name>.mp4, cameras side by side, overlay)."""
    from wam_ros.data.convert import find_bags
    from wam_ros.runtime import load_policy

    policy = load_policy(checkpoint, backend=options.backend, memory=options.memory,
                         mode=options.mode, flow_steps=options.flow_steps,
                         device=options.device, seed=options.seed,
                         noise_scale=options.noise_scale if options.noise_scale >= 0 else None)
    _warm_up(policy)
    episodes, plots, errors = [], [], []
    for path in find_bags(bags):
        video = None
        if video_dir is not None:
            from wam_ros.data.run_video import RunVideo

            rate = RobotSpec.load(policy.meta.robot).cameras[0].rate_hz
            video = RunVideo(Path(video_dir) / f"{Path(path).name}.mp4", rate)
        try:
            metrics, plot = replay_episode(path, policy, options, log, video)
        finally:
            if video is not None and video.close() is not None:
                log(f"video: {video.path}")
        errors.append(metrics.pop("_errors"))
        episodes.append(metrics)
        plots.append((Path(path).name, plot))
        log(f"{Path(path).name}: {metrics['chunks']} chunks, action mse "
            f"{metrics['action_mse']:.5f}, boundary mae {metrics['boundary_mae']:.4f}, "
            f"{metrics['speed_x']:.1f}x real time")
    e = np.concatenate(errors) if errors else np.zeros((0, policy.meta.action_dim))
    names = list(policy.meta.action_names)
    duration = sum(ep["duration_s"] for ep in episodes)
    wall = sum(ep["wall_s"] for ep in episodes)
    horizon = np.array([ep["horizon_mae"] for ep in episodes], float)
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint), "scheduler": options.scheduler,
        "memory": options.memory, "mode": options.mode, "backend": options.backend,
        "simulated_latency_ms": options.latency_ms,
        "episodes": episodes,
        "action_mse": float(np.mean(e ** 2)) if e.size else float("nan"),
        "per_joint_mae": {n: float(v) for n, v in zip(names, np.abs(e).mean(0))} if e.size
        else {n: float("nan") for n in names},
        "horizon_mae": np.nanmean(horizon, 0).tolist() if horizon.size else [],
        "boundary_mae": float(np.nanmean([ep["boundary_mae"] for ep in episodes]))
        if episodes else float("nan"),
        "boundary_jump.max": max((ep["boundary_jump.max"] for ep in episodes), default=0.0),
        "latency_ms.p50": float(np.median([ep["latency_ms.p50"] for ep in episodes]))
        if episodes else 0.0,
        "latency_ms.p99": max((ep["latency_ms.p99"] for ep in episodes), default=0.0),
        "chunks": sum(ep["chunks"] for ep in episodes),
        "duration_s": duration, "wall_s": wall,
        "speed_x": duration / wall if wall > 0 else float("inf"),
    }
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(report, indent=1))
    if plot_path and plots:
        plot_replay(plots[0][1], names, plot_path, title=f"{plots[0][0]} - {options.scheduler}")
    return report


def _warm_up(policy: Any) -> None:
    """One inference on a blank observation (as the policy node does), so the first chunk's
    latency is not the kernels' first load."""
    h, w = policy.meta.image_size
    spec = RobotSpec.load(policy.meta.robot)
    obs = Observation(0.0, {c: np.zeros((h, w, 3), np.uint8) for c in policy.meta.camera_names},
                      spec.home_vector())
    policy.infer(obs)
    policy.reset()


def plot_replay(plot: dict[str, Any], names: list[str], path: str | Path, title: str = ""
                ) -> None:
    """Recorded vs predicted (every chunk) vs executed, one panel per joint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = plot["start"]
    rec: Recorded = plot["recorded"]
    t = np.linspace(plot["start"], plot["end"], 400)
    ref = rec(t)
    n = len(names)
    cols = 2
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12, 1.7 * rows), sharex=True, squeeze=False)
    executed = np.asarray(plot["executed_q"]) if plot["executed_q"] else None
    for j, name in enumerate(names):
        ax = axes[j % rows][j // rows]
        ax.plot(t - t0, ref[:, j], color="black", lw=1.4, label="recorded")
        for k, (times, actions) in enumerate(plot["chunks"]):
            ax.plot(times - t0, actions[:, j], color="tab:orange", lw=0.8, alpha=0.8,
                    label="predicted chunks" if k == 0 else None)
        if executed is not None:
            ax.plot(np.asarray(plot["executed_t"]) - t0, executed[:, j], color="tab:blue",
                    lw=0.9, ls="--", label="executed")
        ax.set_ylabel(name, fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("s")
    for j in range(n, rows * cols):
        axes[j % rows][j // rows].axis("off")
    axes[0][0].legend(fontsize=7, loc="upper right")
    fig.suptitle(title or "replay", fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


__all__ = ["ReplayOptions", "plot_replay", "recorded_actions", "replay", "replay_episode"]
