"""`wam-ros bench remote --json out.json`: the openpi-protocol path, measured on the loopback.

1. Round trip: a server process (runtime/serve.py's PolicyServer around a trajectory policy
   that costs microseconds) answers requests of 3 cameras at 224x224 uint8 plus the state.
   Overhead = what a call costs above the server's own compute (its `server_timing.infer_ms`):
   ours (RemotePolicy.infer: mapping, msgpack-numpy, websocket, parsing, checks) next to
   openpi-client's WebsocketClientPolicy.infer (openpi's own packing, in its side environment,
   tools/openpi_venv.sh) against the same server in the same run, in alternating blocks.
   Goals: ours p50 <= 1.1 x theirs, our p99 overhead <= 5 ms.
2. Async against a slow server: the same server answering L = 50, 150, 500 ms late (the
   latency of GR00T with TensorRT, DreamZero, slower models) drives ChunkRunner with the async
   scheduler (config/wam_ros.yaml's policy parameters) and an ActionTimeline (the smoother's
   splice and blend) in real time: observations at 30 Hz, ticks at 100 Hz, inference on a
   worker thread, as the policy node does. The policy's chunks sample one smooth trajectory at
   their own action times, so a timing mistake shows as a boundary jump. Per L: idle fraction
   (arm holding for lack of plan, from the first chunk on), blocking latency (observation
   arrival -> chunk ready), largest boundary jump (rad). Goal: idle 0 while L is
   below a chunk's duration minus the margin; a chunk arrives L after its observation, so the
   arm can be kept busy only while 2 L + margin <= the chunk's duration (`two_latencies_fit`).

`python -m wam_ros.apps.bench_remote serve-trajectory --port 0 [--latency-ms L]` is that server.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

LINE = re.compile(r"listening on (ws://[^\s]+)")
ROUNDS = 3  # round trip: alternating blocks of ours and openpi-client's
ROOT = Path(__file__).resolve().parents[3]


# ---- the server: a trajectory policy behind PolicyServer -----------------------------------
class TrajectoryPolicy:
    """Chunk k of an observation stamped t: the arm joints at home + 0.3 sin(0.8 (t + k dt)),
    grippers half open; costs microseconds, so the round trip is all protocol."""

    def __init__(self, robot: str, horizon: int, dt: float) -> None:
        from wam_ros.core.robot import RobotSpec

        self.spec = RobotSpec.load(robot)
        self.horizon, self.dt = horizon, dt
        self.home = self.spec.joint_to_action(self.spec.home_vector())
        self.arm = ~self.spec.gripper_mask()

    def at(self, times: np.ndarray) -> np.ndarray:  # (H,) -> (H, A)
        out = np.repeat(self.home[None], len(times), axis=0)
        out[:, self.arm] += 0.3 * np.sin(0.8 * times)[:, None]
        out[:, ~self.arm] = 0.5
        return out

    def infer(self, obs: Any) -> Any:
        from wam_ros.core.types import Chunk

        times = obs.stamp + self.dt * np.arange(self.horizon)
        return Chunk(obs.stamp, self.at(times).astype(np.float32), self.dt)

    def reset(self) -> None:
        pass


def serve_trajectory(args: argparse.Namespace) -> int:
    from wam_ros.core.robot import RobotSpec
    from wam_ros.runtime.serve import PolicyServer

    spec = RobotSpec.load(args.robot)
    meta = {"server": "wam_ros bench", "robot": spec.name, "cameras": list(spec.camera_names),
            "image_size": [args.image_size, args.image_size], "image_layout": "hwc",
            "action_layout": list(spec.action_layout), "state_layout": list(spec.action_layout),
            "action_space": "absolute", "dt": args.dt, "horizon": args.horizon}
    server = PolicyServer(lambda: TrajectoryPolicy(spec.name, args.horizon, args.dt), meta,
                          spec, port=args.port, extra_latency_s=args.latency_ms * 1e-3,
                          log=lambda _m: None)
    server.serve_forever(lambda port: print(f"[bench] trajectory server listening on "
                                            f"ws://127.0.0.1:{port}", flush=True))
    return 0


class _Server:
    def __init__(self, log: Path, latency_ms: float, horizon: int, dt: float, robot: str,
                 image_size: int) -> None:
        from wam_ros.testing.process import NodeProcess, python_module_cmd

        self.proc = NodeProcess(python_module_cmd(
            "wam_ros.apps.bench_remote", "serve-trajectory", "--port", "0", "--latency-ms",
            str(latency_ms), "--horizon", str(horizon), "--dt", str(dt), "--robot", robot,
            "--image-size", str(image_size)), env={"PYTHONUNBUFFERED": "1"}, log_path=str(log))
        deadline = time.monotonic() + 120.0
        while True:
            match = LINE.search(self.proc.output())
            if match:
                self.url = match.group(1)
                return
            if not self.proc.alive() or time.monotonic() > deadline:
                out = self.proc.output()
                self.proc.stop()
                raise RuntimeError(f"bench server did not start:\n{out}")
            time.sleep(0.05)

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.proc.stop()


# ---- 1. round trip -------------------------------------------------------------------------
def _stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3), "n": int(a.size)}


def _ours(url: str, robot: str, n: int, warmup: int, image_size: int) -> dict[str, list[float]]:
    from wam_ros.core.robot import RobotSpec
    from wam_ros.core.types import Observation
    from wam_ros.runtime.remote import RemotePolicy
    from wam_ros.runtime.server_mapping import ServerMapping

    spec = RobotSpec.load(robot)
    policy = RemotePolicy(ServerMapping.load("wam_ros"), spec, url, timeout_s=10.0,
                          log=lambda _m: None)
    rng = np.random.default_rng(0)
    images = {c: rng.integers(0, 255, (image_size, image_size, 3), dtype=np.uint8)
              for c in spec.camera_names}
    total, wire = [], []
    for i in range(warmup + n):
        obs = Observation(1000.0 + 0.1 * i, images, spec.home_vector(), task="bench")
        t0 = time.perf_counter()
        chunk = policy.infer(obs)
        elapsed = time.perf_counter() - t0
        if i >= warmup:
            server = chunk.extras["server_infer_s"]
            total.append((elapsed - server) * 1e3)
            wire.append((chunk.extras["round_trip_s"] - server) * 1e3)
    policy.close()
    return {"overhead": total, "wire": wire}


def _theirs(python: str, url: str, n: int, warmup: int, image_size: int, out: Path
            ) -> dict[str, Any]:
    script = ROOT / "wam_ros" / "test" / "interop" / "openpi_client_bench.py"
    port = url.rsplit(":", 1)[1]
    run = subprocess.run([python, str(script), port, str(n), str(warmup), str(image_size),
                          str(out)], capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        raise RuntimeError(f"openpi-client bench failed:\n{run.stderr[-3000:]}")
    return json.loads(out.read_text())


def round_trip(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    out = subprocess.run(["bash", str(ROOT / "tools" / "openpi_venv.sh")], capture_output=True,
                         text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"tools/openpi_venv.sh failed:\n{out.stderr[-3000:]}")
    python = out.stdout.strip().splitlines()[-1]
    # alternating blocks, so that load from elsewhere on the machine falls on both clients
    ours: dict[str, list[float]] = {"overhead": [], "wire": []}
    theirs: dict[str, list[float]] = {"overhead_ms": []}
    block = max(1, args.requests // ROUNDS)
    with _Server(work / "server_rt.log", 0.0, args.horizon, args.dt, args.robot,
                 args.image_size) as url:
        for r in range(ROUNDS):
            mine = _ours(url, args.robot, block, args.warmup, args.image_size)
            for k in ours:
                ours[k] += mine[k]
            theirs["overhead_ms"] += _theirs(python, url, block, args.warmup, args.image_size,
                                             work / f"openpi_client_{r}.json")["overhead_ms"]
    result = {"cameras": 3, "image_size": [args.image_size, args.image_size],
              "requests_each": block * ROUNDS, "rounds": ROUNDS,
              "ours_overhead": _stats(ours["overhead"]), "ours_wire": _stats(ours["wire"]),
              "openpi_client_overhead": _stats(theirs["overhead_ms"])}
    ratio = result["ours_overhead"]["p50_ms"] / max(result["openpi_client_overhead"]["p50_ms"],
                                                    1e-9)
    result["ratio_p50_ours_to_openpi_client"] = round(ratio, 3)
    result["goal_ratio_le_1_1"] = bool(ratio <= 1.1)
    result["goal_p99_overhead_le_5ms"] = bool(result["ours_overhead"]["p99_ms"] <= 5.0)
    print(f"round trip above server compute, 3 x {args.image_size}x{args.image_size}: ours p50 "
          f"{result['ours_overhead']['p50_ms']:.2f} / p99 {result['ours_overhead']['p99_ms']:.2f}"
          f" ms; openpi-client p50 {result['openpi_client_overhead']['p50_ms']:.2f} / p99 "
          f"{result['openpi_client_overhead']['p99_ms']:.2f} ms; ratio p50 {ratio:.2f}")
    return result


# ---- 2. async against a slow server --------------------------------------------------------
def async_run(url: str, args: argparse.Namespace, latency_ms: float) -> dict[str, Any]:
    from wam_ros.core.robot import RobotSpec
    from wam_ros.core.settings import PolicySettings, settings_from
    from wam_ros.core.timeline import ActionTimeline
    from wam_ros.core.types import Observation
    from wam_ros.runtime.chunk_runner import ChunkRunner, JobResult
    from wam_ros.runtime.remote import RemotePolicy
    from wam_ros.runtime.server_mapping import ServerMapping
    from wam_ros.runtime.stack import default_pipeline_config, node_params

    spec = RobotSpec.load(args.robot)
    policy = RemotePolicy(ServerMapping.load("wam_ros"), spec, url, timeout_s=10.0,
                          log=lambda _m: None)
    settings = settings_from(PolicySettings, node_params("wam_policy"), robot=spec.name,
                             scheduler="async")
    rng = np.random.default_rng(1)
    images = {c: rng.integers(0, 255, (args.image_size, args.image_size, 3), dtype=np.uint8)
              for c in spec.camera_names}
    # as the policy node does: one warm-up call gives the latency the scheduler starts from
    warm = policy.infer(Observation(time.monotonic(), images, spec.home_vector(), task="bench"))
    policy.reset()
    runner = ChunkRunner.from_settings(policy, settings, max(warm.inference_time, 1e-3))
    timeline = ActionTimeline(spec.action_dim, default_pipeline_config().timeline)
    worker = ThreadPoolExecutor(max_workers=1)
    pending: Future[JobResult] | None = None
    jumps: list[float] = []
    spliced = 0
    t_end = time.monotonic() + args.duration
    next_obs = next_tick = time.monotonic()
    wake = threading.Event()
    try:
        while True:
            now = time.monotonic()
            if now >= t_end:
                break
            if now >= next_obs:
                runner.on_observation(Observation(now, images, spec.home_vector(),
                                                  task="bench"), now)
                next_obs += 1.0 / 30.0
            if pending is not None and pending.done():
                chunk = runner.finish(pending.result(), now)
                pending = None
                if chunk is not None:
                    splice = timeline.splice(chunk, now)
                    if splice.accepted:
                        runner.on_chunk_applied(chunk.stamp, now)
                        spliced += 1
                        if spliced > 1:  # the first chunk has no plan before it
                            jumps.append(splice.boundary_jump)
            if now >= next_tick or pending is None:
                job = runner.poll(now)
                if job is not None:
                    pending = worker.submit(runner.execute, job)
                    pending.add_done_callback(lambda _f: wake.set())
                if now >= next_tick:
                    next_tick += 0.01
            wake.wait(max(0.0, min(next_obs, next_tick) - time.monotonic()))
            wake.clear()
    finally:
        if pending is not None:
            pending.result()
        worker.shutdown()
        policy.close()
    stats = runner.stats()
    chunk_s = args.horizon * args.dt
    result = {"latency_ms": latency_ms, "chunk_s": chunk_s,
              "margin_s": settings.latency_margin_s,
              "idle_fraction": round(float(stats["idle_fraction"]), 4),
              "blocking_latency_ms.p50": round(float(stats["blocking_latency_ms.p50"]), 2),
              "blocking_latency_ms.p99": round(float(stats["blocking_latency_ms.p99"]), 2),
              "max_boundary_jump_rad": round(float(max(jumps, default=0.0)), 5),
              "chunks": int(stats["chunks"]), "spliced": spliced,
              "refused": {k: v for k, v in stats.items() if str(k).startswith("refused.")},
              "expected_latency_ms": round(float(stats["expected_latency_ms"]), 1)}
    # the goal: idle 0 while L < chunk - margin. A chunk arrives L after its
    # observation, so only chunk - L of it is ahead of the arm, and the next one takes L more:
    # async can keep the arm busy only while 2 L + margin <= chunk
    latency = latency_ms * 1e-3
    result["goal_applies"] = bool(latency < chunk_s - settings.latency_margin_s)
    result["two_latencies_fit"] = bool(2 * latency + settings.latency_margin_s <= chunk_s)
    result["goal_idle_0_met"] = bool(result["idle_fraction"] == 0.0) \
        if result["goal_applies"] else None
    print(f"async, server +{latency_ms:.0f} ms: idle {result['idle_fraction']:.3f}, blocking "
          f"p50 {result['blocking_latency_ms.p50']:.0f} / p99 "
          f"{result['blocking_latency_ms.p99']:.0f} ms, largest boundary jump "
          f"{result['max_boundary_jump_rad']:.4f} rad, {result['chunks']} chunks")
    return result


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": commit,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "load_average_1min_start": round(os.getloadavg()[0], 2)},
        "command": "wam-ros bench remote " + " ".join(sys.argv[3:] if len(sys.argv) > 3
                                                       else []),
    }
    with tempfile.TemporaryDirectory(prefix="wam_bench_remote_") as tmp:
        work = Path(tmp)
        if not args.skip_round_trip:
            result["round_trip"] = round_trip(args, work)
        result["async"] = {}
        for latency in (float(v) for v in args.latencies_ms.split(",") if v):
            with _Server(work / f"server_{latency:.0f}.log", latency, args.horizon, args.dt,
                         args.robot, args.image_size) as url:
                result["async"][f"{latency:.0f}"] = async_run(url, args, latency)
    result["machine"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m wam_ros.apps.bench_remote")
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("serve-trajectory")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--latency-ms", type=float, default=0.0)
    s.add_argument("--horizon", type=int, default=30)
    s.add_argument("--dt", type=float, default=1.0 / 30.0)
    s.add_argument("--robot", default="cobot_magic")
    s.add_argument("--image-size", type=int, default=224)
    args = p.parse_args(argv)
    return serve_trajectory(args)


if __name__ == "__main__":
    sys.exit(main())
