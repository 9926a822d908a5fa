"""`wam-ros sim ...`: the MuJoCo simulator from the command line.

    wam-ros sim generate --robot R --task T --episodes N --out DATA [--image-size H W]
                         [--seed S] [--workers 2]      expert episodes -> training dataset
                         [--recover CKPT [--switch-s 2 12]]   recovery episodes from a
                                                       policy's states (DAgger-style)
                         [--disturb 0.035 0.015 0.15]  the expert's approach off by a random
                                                       error its descent corrects (DART-style)
                         [--miss 0.035 0.045]          the expert's grasp closes beside or
                                                       above the cube, then it recovers
    wam-ros sim check    --robot R --task T [--episodes 50] [--seed S] [--json F]
                                                       scripted expert success rate
    wam-ros sim rollout  --checkpoint CKPT --robot R --task T [--episodes 20] [--seed S]
                         [--execute 8 [--delay K] | --stack sync|async|sai [--latency-ms 100]]
                         [--memory kv|ttt] [--json F]  a checkpoint in closed loop, no ROS
    wam-ros sim bench    --robot R [--json F]          physics steps/s, render ms per camera
    wam-ros sim snapshot --robot R --task T --out F.png [--seed S] [--size H W]
                                                       every camera after reset, side by side
    wam-ros sim mjcf     --robot R [--task T]          the generated scene as MJCF
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

from wam_ros.core.settings import LOCAL_BACKENDS, MEMORIES, SCHEDULERS, PolicySettings

ROBOTS_HELP = "robot config name (config/robots/<robot>.yaml)"


def register(sub: argparse._SubParsersAction) -> None:
    from wam_ros.sim.tasks import TASKS

    p = sub.add_parser("sim", help="MuJoCo simulator: generate expert data, check, bench")
    cmds = p.add_subparsers(dest="sim_command", metavar="SIM_COMMAND")

    def common(q: argparse.ArgumentParser, task: bool = True) -> None:
        q.add_argument("--robot", default="cobot_magic", help=ROBOTS_HELP)
        if task:
            q.add_argument("--task", default="pick_place", choices=sorted(TASKS))

    g = cmds.add_parser("generate", help="scripted expert episodes -> training dataset")
    common(g)
    g.add_argument("--episodes", type=int, required=True, help="successful episodes to write")
    g.add_argument("--out", required=True, help="dataset directory (created or appended to)")
    g.add_argument("--image-size", type=int, nargs=2, default=(96, 96), metavar=("H", "W"),
                   help="stored image size = the model's input size (default 96 96)")
    g.add_argument("--image-format", choices=("raw", "jpeg"), default="raw",
                   help="store images raw or as one JPEG per frame (about 5x smaller)")
    g.add_argument("--seed", type=int, default=0, help="first episode seed (default 0)")
    g.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    g.add_argument("--recover", metavar="CKPT",
                   help="recovery episodes instead: this checkpoint drives the robot (through "
                        "the runtime) until a random switch time, then the scripted expert "
                        "takes over from that state; only the expert's part is recorded "
                        "(DAgger-style data from the policy's own states; pick_place)")
    g.add_argument("--disturb", type=float, nargs=3,
                   metavar=("LATERAL_M", "VERTICAL_M", "YAW_RAD"),
                   help="disturbed expert episodes instead (pick_place): the approach ends off "
                        "by a random error up to these bounds (e.g. 0.035 0.015 0.15) that the "
                        "descent corrects; only the correction onwards is recorded")
    g.add_argument("--disturb-distance", type=float, metavar="M",
                   help="--disturb: the expert reaches its true pre-grasp, then the erroneous "
                        "pose this close to the cube (m along the gripper's axis, e.g. 0.04); "
                        "the descent from there is recorded")
    g.add_argument("--miss", type=float, nargs=2, metavar=("LATERAL_M", "HIGH_M"),
                   help="missed-grasp episodes instead (pick_place): the expert closes the "
                        "gripper about LATERAL_M beside or HIGH_M above the cube (e.g. 0.035 "
                        "0.045), then recovers and finishes; only the recovery is recorded")
    g.add_argument("--miss-open-first", action="store_true",
                   help="--miss: the recovery opens the gripper where it closed before it "
                        "rises (default: it rises first, as a lift does)")
    g.add_argument("--switch-s", type=float, nargs=2, default=(2.0, 12.0), metavar=("LO", "HI"),
                   help="--recover: switch time range, sim seconds (default 2 12)")
    g.add_argument("--stack", choices=SCHEDULERS, default=PolicySettings.scheduler,
                   help="--recover: the policy's scheduler (default async)")
    g.add_argument("--latency-ms", type=float, default=40.0,
                   help="--recover: simulated inference latency median (default 40)")
    g.add_argument("--latency-p99-ms", type=float, default=90.0,
                   help="--recover: its 99th percentile (default 90)")
    g.set_defaults(func=run_generate)

    c = cmds.add_parser("check", help="scripted expert success rate over seeds")
    common(c)
    c.add_argument("--episodes", type=int, default=50)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--json", help="write the result here")
    c.set_defaults(func=run_check)

    r = cmds.add_parser("rollout", help="a checkpoint in closed loop on the simulator, no ROS "
                        "(synchronous: the sim waits for the model)")
    common(r)
    r.add_argument("--checkpoint", required=True)
    r.add_argument("--episodes", type=int, default=20)
    r.add_argument("--seed", type=int, default=100000,
                   help="first episode seed (default 100000: away from generated data)")
    r.add_argument("--execute", type=int, default=8, help="actions executed per chunk")
    r.add_argument("--delay", type=int, default=0,
                   help="inference latency in actions: the previous chunk runs on meanwhile")
    r.add_argument("--stack", choices=SCHEDULERS,
                   help="run through the robot-side runtime with this scheduler instead (policy "
                        "node scheduler, decoder, smoother timeline and limits at the control "
                        "rate; the graph minus DDS); --execute/--delay do not apply")
    r.add_argument("--latency-ms", type=float, default=100.0,
                   help="--stack: simulated inference latency (default 100, as measured "
                        "through the graph)")
    r.add_argument("--latency-p99-ms", type=float, default=None,
                   help="--stack: draw each inference's latency from a log-normal with median "
                        "--latency-ms and this 99th percentile (a graph's latency tail; "
                        "seeded per episode)")
    r.add_argument("--handoff-ms", type=float, default=0.0,
                   help="--stack: a finished chunk reaches the smoother this much later (the "
                        "graph's decoder and transport; the runner learns it)")
    r.add_argument("--timeout", type=float, default=15.0, help="sim seconds per episode")
    r.add_argument("--memory", default=PolicySettings.memory, choices=MEMORIES)
    r.add_argument("--memory-stride", type=float, default=None,
                   help="seconds between observations kept in memory (default: one chunk, "
                        "as trained; 0: every observation)")
    r.add_argument("--backend", default=PolicySettings.backend, choices=LOCAL_BACKENDS)
    r.add_argument("--inpaint", default=None, action=argparse.BooleanOptionalAction,
                   help="--stack: inpaint each chunk's prefix with the executing chunk "
                        "(default: config/wam_ros.yaml's inpaint_prefix)")
    r.add_argument("--sai-s-mid", type=float, default=None,
                   help="--stack sai: share of the flow integrated speculatively (default: "
                        "config/wam_ros.yaml's sai_s_mid)")
    r.add_argument("--latency-deviations", type=float, default=None,
                   help="--stack async/sai: plan ahead by this many mean latency deviations "
                        "beyond the expected latency and hand-off (default: "
                        "config/wam_ros.yaml's latency_deviations)")
    r.add_argument("--noise-scale", type=float, default=None,
                   help="flow starting-noise scale (default: the checkpoint's)")
    r.add_argument("--policy-param", action="append", default=[], metavar="NAME=VALUE",
                   help="a wam_policy parameter replacing config/wam_ros.yaml's "
                        "(repeatable), e.g. latency_margin_s=0.15 (--stack) or flow_steps=8")
    r.add_argument("--json", help="write the result here")
    r.add_argument("--video", metavar="DIR",
                   help="write DIR/episode_<seed>.mp4 per episode: the cameras side by side, "
                        "episode, time, phase and plan latency overlaid")
    r.set_defaults(func=run_rollout)

    b = cmds.add_parser("bench", help="physics steps/s and render time per camera")
    common(b, task=False)
    b.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    b.add_argument("--json", help="write the result here")
    b.set_defaults(func=run_bench)

    s = cmds.add_parser("snapshot", help="render every camera after reset into one PNG")
    common(s)
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    s.set_defaults(func=run_snapshot)

    m = cmds.add_parser("mjcf", help="print the generated scene as MJCF")
    common(m)
    m.set_defaults(func=run_mjcf)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _env() -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")


def _write_json(path: str | None, result: dict) -> None:
    """--json: the command's result, when asked for."""
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=1)


def run_generate(args: argparse.Namespace) -> int:
    _env()
    from wam_ros.sim.generate import Disturbance, Miss, Recovery, generate_dataset

    recovery = disturbance = miss = None
    if args.miss:
        try:
            miss = Miss(*args.miss, open_first=args.miss_open_first)
        except ValueError as exc:
            print(f"error: --miss: {exc}", file=sys.stderr)
            return 2
    if args.disturb:
        try:
            disturbance = Disturbance(*args.disturb, distance_m=args.disturb_distance)
        except ValueError as exc:
            print(f"error: --disturb: {exc}", file=sys.stderr)
            return 2
    elif args.disturb_distance is not None:
        print("error: --disturb-distance needs --disturb", file=sys.stderr)
        return 2
    if args.recover:
        try:
            recovery = Recovery(args.recover, tuple(args.switch_s), args.stack,
                                args.latency_ms * 1e-3, args.latency_p99_ms * 1e-3)
        except ValueError as exc:
            print(f"error: --recover: {exc}", file=sys.stderr)
            return 2
    try:  # generate_dataset refuses other tasks and both at once before writing anything
        report = generate_dataset(args.robot, args.task, args.episodes, args.out,
                                  tuple(args.image_size), seed=args.seed, workers=args.workers,
                                  recovery=recovery, disturbance=disturbance, miss=miss,
                                  image_format=args.image_format)
    except ValueError as exc:
        which = " and ".join(f for f, v in (("--recover", args.recover),
                                            ("--disturb", args.disturb),
                                            ("--miss", args.miss)) if v)
        print(f"error: {which + ': ' if which else ''}{exc}", file=sys.stderr)
        return 2
    print(f"wrote {report.episodes} episodes ({report.frames} frames) to {report.out} in "
          f"{report.seconds:.1f} s: {report.frames_per_second:.0f} frames/s; "
          f"{report.failed} episodes skipped"
          + (f" {report.failure_kinds} (seeds {report.failed_seeds})" if report.failed else ""))
    return 0 if report.episodes == args.episodes else 1


def run_check(args: argparse.Namespace) -> int:
    _env()
    from tqdm import tqdm

    from wam_ros.sim.expert_rollout import run_expert
    from wam_ros.sim.mujoco_sim import Simulator
    from wam_ros.sim.planning import PlanningError

    sim = Simulator(args.robot, args.task, args.seed)
    results = []
    for seed in tqdm(range(args.seed, args.seed + args.episodes), desc="episodes"):
        try:
            r = run_expert(sim, seed=seed)
            results.append({"seed": seed, "success": r.success, "phase": r.phase,
                            "seconds": round(r.seconds, 3)})
        except PlanningError as exc:
            results.append({"seed": seed, "success": False, "phase": f"planning: {exc}",
                            "seconds": 0.0})
    sim.close()
    ok = [r for r in results if r["success"]]
    summary = {"robot": args.robot, "task": args.task, "episodes": len(results),
               "successes": len(ok), "success_rate": len(ok) / len(results),
               "mean_episode_s": sum(r["seconds"] for r in ok) / max(1, len(ok)),
               "failures": [r for r in results if not r["success"]]}
    print(f"{args.robot} {args.task}: {len(ok)}/{len(results)} solved "
          f"({100 * summary['success_rate']:.0f} %), mean episode "
          f"{summary['mean_episode_s']:.1f} s sim")
    for r in summary["failures"]:
        print(f"  seed {r['seed']}: {r['phase']}")
    _write_json(args.json, summary)
    return 0


# wam_policy parameters that shape the loaded policy rather than the runtime around it, as
# load_policy's arguments; and those a flag of `sim rollout` sets instead
_LOAD_PARAMS = {"flow_steps": "flow_steps", "mode": "mode", "noise_scale": "noise_scale",
                "device": "device", "inference_threads": "threads"}
_FLAG_PARAMS = {"robot": "--robot", "checkpoint": "--checkpoint", "backend": "--backend",
                "memory": "--memory", "scheduler": "--stack"}


def load_settings(overrides: dict[str, object], noise_scale: float | None) -> dict[str, object]:
    """Moves the load-time --policy-param settings out of `overrides` into load_policy
    keyword arguments (with --noise-scale); a setting a flag owns is a ConfigError."""
    from wam_ros.core.config import ConfigError

    for name, flag in _FLAG_PARAMS.items():
        if name in overrides:
            raise ConfigError(f"--policy-param {name}: set it with {flag}")
    load = {arg: overrides.pop(name) for name, arg in _LOAD_PARAMS.items() if name in overrides}
    if noise_scale is not None:
        if load.get("noise_scale", noise_scale) != noise_scale:
            raise ConfigError("--noise-scale and --policy-param noise_scale disagree")
        load["noise_scale"] = noise_scale
    elif float(load.get("noise_scale", -1.0)) < 0:  # the parameter's "< 0: the checkpoint's"
        load["noise_scale"] = None
    return load


def run_rollout(args: argparse.Namespace) -> int:
    _env()
    from dataclasses import replace

    import numpy as np
    from tqdm import tqdm

    from wam_ros.core.config import ConfigError
    from wam_ros.core.settings import PolicySettings, policy_overrides
    from wam_ros.runtime import load_policy
    from wam_ros.sim.mujoco_sim import Simulator
    from wam_ros.sim.rollout import policy_rollout, stack_rollout

    if args.latency_ms <= 0:
        print(f"error: --latency-ms: got {args.latency_ms}; allowed: > 0", file=sys.stderr)
        return 2
    if args.handoff_ms < 0:
        print(f"error: --handoff-ms: got {args.handoff_ms}; allowed: >= 0", file=sys.stderr)
        return 2
    if args.latency_p99_ms is not None and args.latency_p99_ms < args.latency_ms:
        print(f"error: --latency-p99-ms: got {args.latency_p99_ms}; allowed: >= --latency-ms "
              f"({args.latency_ms})", file=sys.stderr)
        return 2
    # --stack options that replace config/wam_ros.yaml's policy node parameters
    overrides = {k: v for k, v in (("inpaint_prefix", args.inpaint),
                                   ("sai_s_mid", args.sai_s_mid),
                                   ("latency_deviations", args.latency_deviations))
                 if v is not None}
    try:
        overrides.update(policy_overrides(args.policy_param))
        replace(PolicySettings(), **overrides)  # values checked before anything loads
        recorded = {k: v for k, v in overrides.items() if k != "noise_scale"}  # the policy's
        load = load_settings(overrides, args.noise_scale)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    policy = load_policy(args.checkpoint, backend=args.backend, memory=args.memory,
                         memory_stride=args.memory_stride, **load)
    runs = []
    from contextlib import nullcontext

    from wam_ros.data.run_video import RunVideo

    def video_of(seed: int):  # one file per episode; frames at the camera / action rate
        if not args.video:
            return nullcontext()
        fps = (sim.robot.cameras[0].rate_hz if args.stack else sim.robot.action_rate_hz)
        return RunVideo(Path(args.video) / f"episode_{seed}.mp4", fps)

    with Simulator(args.robot, args.task, args.seed) as sim:
        for seed in tqdm(range(args.seed, args.seed + args.episodes), desc="episodes"):
            with video_of(seed) as video:
                if args.stack:
                    runs.append(stack_rollout(sim, policy, seed, scheduler=args.stack,
                                              latency_s=args.latency_ms * 1e-3,
                                              policy_settings=overrides,
                                              latency_p99_s=None if args.latency_p99_ms is None
                                              else args.latency_p99_ms * 1e-3,
                                              handoff_s=args.handoff_ms * 1e-3,
                                              timeout=args.timeout, video=video))
                else:
                    runs.append(policy_rollout(sim, policy, seed, execute=args.execute,
                                               timeout=args.timeout, delay=args.delay,
                                               video=video))
    ok = [r for r in runs if r.success]
    phases = dict(Counter(r.phase for r in runs))
    infer = np.concatenate([r.infer_ms for r in runs])
    summary = {"robot": args.robot, "task": args.task, "checkpoint": args.checkpoint,
               "memory": args.memory, "noise_scale": policy.noise_scale,
               "flow_steps": policy.flow_steps,
               **({"stack": args.stack, "latency_ms": args.latency_ms,
                   "latency_p99_ms": args.latency_p99_ms, "handoff_ms": args.handoff_ms,
                   **recorded}
                  if args.stack else
                  {"execute": args.execute, "delay": args.delay}),
               "episodes": len(runs),
               "success_rate": len(ok) / len(runs),
               "mean_completion_s": float(np.mean([r.seconds for r in ok])) if ok else None,
               "final_phases": phases, "infer_ms_p50": float(np.percentile(infer, 50)),
               **({"idle_fraction": float(np.mean([r.idle_fraction for r in runs]))}
                  if args.stack else {}),
               "episodes_detail": [{"seed": r.seed, "success": r.success, "phase": r.phase,
                                    "seconds": round(r.seconds, 2)} for r in runs]}
    print(f"{args.robot} {args.task}: {len(ok)}/{len(runs)} solved "
          f"({100 * summary['success_rate']:.0f} %); final phases {phases}; "
          + (f"mean completion {summary['mean_completion_s']:.1f} s sim; " if ok else "")
          + f"inference p50 {summary['infer_ms_p50']:.1f} ms"
          + (f"; idle fraction {summary['idle_fraction']:.3f}" if args.stack else ""))
    _write_json(args.json, summary)
    return 0


def run_bench(args: argparse.Namespace) -> int:
    _env()
    import numpy as np

    from wam_ros.sim.mujoco_sim import Simulator

    h, w = args.size
    with Simulator(args.robot, "pick_place", 0) as sim:
        sim.step(0.1)
        t = time.perf_counter()
        sim.step(2.0)
        physics = 2.0 / sim.dt / (time.perf_counter() - t)
        sim.render(width=w, height=h)  # warm-up (context, shader compilation)
        per_cam = {c: [] for c in sim.robot.camera_names}
        for _ in range(20):
            for cam, times in per_cam.items():
                t = time.perf_counter()
                sim.render([cam], width=w, height=h)
                times.append(1000 * (time.perf_counter() - t))
    result = {"robot": args.robot, "physics_steps_per_s": round(physics),
              "physics_dt": sim.dt, "render_size": [h, w],
              "render_ms": {c: round(float(np.median(v)), 2) for c, v in per_cam.items()}}
    print(json.dumps(result, indent=1))
    _write_json(args.json, result)
    return 0


def run_snapshot(args: argparse.Namespace) -> int:
    _env()
    import cv2
    import numpy as np

    from wam_ros.sim.mujoco_sim import Simulator

    h, w = args.size
    with Simulator(args.robot, args.task, args.seed) as sim:
        sim.step(0.2)
        images = sim.render(width=w, height=h)
    cv2.imwrite(args.out, cv2.cvtColor(np.concatenate(list(images.values()), 1),
                                       cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out}: {', '.join(images)}")
    return 0


def run_mjcf(args: argparse.Namespace) -> int:
    from wam_ros.sim.scene import Scene
    from wam_ros.sim.tasks import task_class

    sys.stdout.write(Scene(args.robot, task_class(args.task).objects).xml())
    return 0
