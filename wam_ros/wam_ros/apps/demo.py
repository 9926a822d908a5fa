"""`wam-ros demo` and `wam-ros eval`: the simulated robot and the full node graph in closed loop
with a checkpoint (default: the one shipped for the robot), then a report.

demo: a few randomised episodes of one task with one scheduler and memory; prints a table
(success, completion time, plan latency), writes a strip of the high camera's frames and a plot
of commanded vs measured joints of the first episode.

eval: K randomised episodes per scheduler (sync | async | sai) and memory (kv | ttt), printed
side by side; the same seeds for every combination.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from wam_ros.apps.closed_loop import (
    ClosedLoop,
    EpisodeResult,
    Trace,
    default_real_time_factor,
    prepared_checkpoint,
    summarise,
)
from wam_ros.core.settings import MEMORIES, SCHEDULERS


def _work_dir(args: argparse.Namespace, prefix: str):
    """Where the nodes write their logs: --keep-logs DIR, or a temporary folder."""
    if args.keep_logs:
        path = Path(args.keep_logs).resolve()
        path.mkdir(parents=True, exist_ok=True)
        print(f"[{prefix}] node logs: {path}", flush=True)
        return contextlib.nullcontext(str(path)), path
    tmp = tempfile.TemporaryDirectory(prefix=f"wam_{prefix}_")
    return tmp, Path(tmp.name)


def _checkpoint(args: argparse.Namespace, robot: str) -> Path:
    from wam_ros.paths import resolve_checkpoint

    return resolve_checkpoint(args.checkpoint, robot, args.task)


def real_time_factor(args: argparse.Namespace) -> float:
    """--real-time-factor, or the robot's default (closed_loop.default_real_time_factor)."""
    if args.real_time_factor is not None:
        return float(args.real_time_factor)
    from wam_ros.core.robot import RobotSpec

    return default_real_time_factor(RobotSpec.load(args.robot).control_rate_hz)


def _run_episodes(args: argparse.Namespace, workdir: Path, scheduler: str, memory: str,
                  trace_first: bool = False, checkpoint: Path | None = None,
                  videos: Callable[[int], Path | None] | None = None
                  ) -> tuple[list[EpisodeResult], Trace | None]:
    """videos(k): where to film episode k (0-based), None: not filmed."""
    checkpoint = prepared_checkpoint(checkpoint or _checkpoint(args, args.robot), args.backend,
                                     workdir.parent)
    backend, policy_params, server = args.backend, None, None
    if getattr(args, "served", False):
        from wam_ros.cli.serve import ServeProcess

        workdir.mkdir(parents=True, exist_ok=True)
        # at the policy node's inference nice value: on this one computer the server must
        # not take the CPU from the control path any more than the node's own model would
        server = ServeProcess(checkpoint, workdir / "serve.log", backend=args.backend,
                              memory=memory, nice=10)
        print(f"[{scheduler}/{memory}] model served at {server.url} "
              f"(wam-ros serve, backend {args.backend}); policy node backend remote",
              flush=True)
        backend = "remote"
        policy_params = {"server_url": server.url, "server_mapping": "wam_ros"}
    try:
        loop = ClosedLoop(workdir, args.robot, args.task, checkpoint, scheduler=scheduler,
                          memory=memory, backend=backend, composed=args.composed,
                          seed=args.seed, real_time_factor=args.real_time_factor,
                          max_command_age_s=(None if args.max_command_age_ms < 0
                                             else args.max_command_age_ms * 1e-3),
                          policy_params=policy_params, video=videos is not None)
    except BaseException:
        if server is not None:
            server.stop()
        raise
    results: list[EpisodeResult] = []
    first_trace = None
    try:
        for k in range(args.episodes):
            video = videos(k) if videos is not None else None
            r = loop.episode(args.timeout, trace=trace_first and k == 0, video_path=video)
            if video is not None and video.is_file():
                print(f"video: {video}", flush=True)
            if k == 0:
                first_trace = loop.trace
            results.append(r)
            lat = np.array(r.latencies_ms) if r.latencies_ms else np.array([np.nan])
            print(f"[{scheduler}/{memory}] episode {k + 1}/{args.episodes} seed {r.seed}: "
                  f"{'success' if r.success else 'FAIL (' + r.phase + ')'} "
                  f"in {r.completion_s:.1f} s; plan latency p50 "
                  f"{np.nanpercentile(lat, 50):.0f} ms; real-time factor "
                  f"{r.real_time_factor:.2f}", flush=True)
    finally:
        loop.close()
        if server is not None:
            server.stop()
    return results, first_trace


def run_demo(args: argparse.Namespace) -> int:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from wam_ros.core.config import ConfigError
    from wam_ros.core.robot import RobotSpec
    from wam_ros.paths import default_checkpoint, task_checkpoint

    spec = RobotSpec.load(args.robot)
    if args.served and args.scheduler == "sai":
        print("error: --served runs the policy node with backend remote: sai needs the model's "
              "internals and runs only on our WAM in the node; allowed: sync, async")
        return 2
    args.real_time_factor = real_time_factor(args)  # resolved once: printed and used
    tmp, work = _work_dir(args, "demo")
    try:
        checkpoint = _checkpoint(args, spec.name)
    except ConfigError as exc:
        if args.checkpoint:
            print(f"error: {exc}")
            return 2
        # No trained default for this robot in this checkout: still run the whole loop, with
        # an untrained model, and say so (the task will not be solved).
        from wam_ros.testing.checkpoints import make_tiny_checkpoint

        checkpoint = make_tiny_checkpoint(work / "untrained", spec.name)
        args.backend = "torch"
        print(f"note: no default checkpoint shipped for {spec.name} "
              f"({default_checkpoint(spec.name, args.task)}); running an UNTRAINED tiny model: "
              "the loop runs, the task is not solved")
    else:  # a trained checkpoint: say when it was not trained on this task
        if not args.checkpoint and args.task != "pick_place" and \
                task_checkpoint(spec.name, args.task) is None:
            print(f"note: no checkpoint shipped for {spec.name} {args.task}; the robot's "
                  "default was trained on pick_place only and is not expected to solve it")
    if not args.headless and not os.environ.get("DISPLAY"):
        print("note: no display here; running headless (offscreen rendering)")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"[demo] {spec.name} {args.task}: scheduler {args.scheduler}, memory {args.memory}, "
          f"backend {args.backend}, checkpoint {checkpoint}, simulator at "
          f"{args.real_time_factor:g} of real time", flush=True)
    with tmp:
        # the first episode filmed next to the image strip; --video DIR: every episode
        def videos(k: int) -> Path | None:
            if args.video:
                return Path(args.video) / f"episode_{k + 1}.mp4"
            return out_dir / "episode_1.mp4" if k == 0 else None

        results, trace = _run_episodes(args, work / "run", args.scheduler,
                                       args.memory, trace_first=True, checkpoint=checkpoint,
                                       videos=videos)
    summary = summarise(results)
    print()
    print(f"{'episode':>7} {'seed':>6} {'success':>8} {'time s':>7} {'lat p50':>8} "
          f"{'lat p99':>8}")
    for k, r in enumerate(results):
        lat = np.array(r.latencies_ms) if r.latencies_ms else np.array([np.nan])
        print(f"{k + 1:7d} {r.seed:6d} {'yes' if r.success else 'no':>8} "
              f"{r.completion_s:7.1f} {np.nanpercentile(lat, 50):6.0f}ms "
              f"{np.nanpercentile(lat, 99):6.0f}ms")
    print(f"success {summary['success_rate']:.0%}, mean completion "
          f"{summary['mean_completion_s']:.1f} s, plan latency p50 "
          f"{summary['latency_ms.p50']:.0f} ms / p99 {summary['latency_ms.p99']:.0f} ms "
          f"(camera stamp -> first command of the plan, sim time)")
    if trace is not None:
        strip, plot = out_dir / "camera_strip.png", out_dir / "joints.png"
        if _image_strip(trace, strip):
            print(f"image strip: {strip}")
        if _plot(spec, trace, plot):
            print(f"joint plot: {plot}")
    if args.json_out:
        doc = {"robot": spec.name, "task": args.task, "scheduler": args.scheduler,
               "memory": args.memory, "backend": args.backend, "served": args.served,
               **summary,
               "latency_ms": {"p50": summary["latency_ms.p50"],
                              "p99": summary["latency_ms.p99"]},
               "episodes": [r.__dict__ | {"latencies_ms": None} for r in results]}
        Path(args.json_out).write_text(json.dumps(_finite(doc), indent=2) + "\n")
    return 0


def _finite(value):
    """NaN (no successful episode, no latency) -> null: strict JSON for other tools."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def run_eval(args: argparse.Namespace) -> int:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    schedulers = [s for s in args.schedulers.split(",") if s]
    memories = [m for m in args.memories.split(",") if m]
    bad = [s for s in schedulers if s not in SCHEDULERS] + [
        m for m in memories if m not in MEMORIES]
    if bad:
        print(f"error: unknown scheduler or memory {bad[0]!r}; allowed: sync, async, sai / "
              "kv, ttt")
        return 2
    if args.served and "sai" in schedulers:
        print("error: --served: sai runs only on our WAM in the node; use --schedulers "
              "sync,async")
        return 2
    args.real_time_factor = real_time_factor(args)  # resolved once for every combination
    table: dict[str, dict[str, dict[str, float]]] = {}
    tmp, work = _work_dir(args, "eval")
    with tmp:
        for s in schedulers:
            for m in memories:
                results, _ = _run_episodes(args, work / f"{s}_{m}", s, m)
                table.setdefault(s, {})[m] = summarise(results)
    print(f"\n{args.robot} {args.task}, {args.episodes} episodes each (seeds from {args.seed}), "
          f"simulator at {args.real_time_factor:g} of real time")
    print(f"{'scheduler':>9} {'memory':>6} {'success':>8} {'completion s':>13} "
          f"{'lat p50 ms':>11} {'lat p99 ms':>11}")
    for s, per in table.items():
        for m, r in per.items():
            print(f"{s:>9} {m:>6} {r['success_rate']:8.0%} {r['mean_completion_s']:13.2f} "
                  f"{r['latency_ms.p50']:11.0f} {r['latency_ms.p99']:11.0f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(_finite(table), indent=2) + "\n")
    return 0


def _image_strip(trace: Trace, path: Path, count: int = 6) -> bool:
    if not trace.frames:
        return False
    import cv2

    idx = np.linspace(0, len(trace.frames) - 1, min(count, len(trace.frames))).round()
    frames = [trace.frames[int(i)][1] for i in idx]
    h = min(f.shape[0] for f in frames)
    strip = np.concatenate([f[:h] for f in frames], axis=1)
    cv2.imwrite(str(path), strip[:, :, ::-1])
    return True


def _plot(spec, trace: Trace, path: Path) -> bool:
    if not trace.commanded:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = trace.commanded[0][0]
    tc = np.array([c[0] for c in trace.commanded]) - t0
    qc = np.array([c[1] for c in trace.commanded])
    tm = np.array([m[0] for m in trace.measured]) - t0
    qm = np.array([m[1] for m in trace.measured])
    n, cols = spec.action_dim, 2
    rows = (n + 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(11, 1.6 * rows), sharex=True)
    for i, ax in enumerate(axes.ravel()[:n]):
        ax.plot(tc, qc[:, i], lw=1.2, label="commanded")
        if len(tm):
            ax.plot(tm, qm[:, i], lw=1.0, ls="--", label="measured")
        ax.set_ylabel(spec.action_layout[i], fontsize=7)
    axes.ravel()[0].legend(fontsize=7)
    fig.suptitle(f"{spec.name}: commanded vs measured joints (first episode, sim time)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
