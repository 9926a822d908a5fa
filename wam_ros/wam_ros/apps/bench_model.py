"""`wam-ros bench <what>`: benchmarks, one sub-command each.

    wam-ros bench model [--checkpoint CKPT] [--json out.json]
    wam-ros bench remote [--json out.json]       (bench_remote.py)

`model`: per-chunk latency (encoder included, observation -> chunk) p50/p99 for each available
backend x inference mode at the checkpoint's size, SAI blocking latency, and memory growth over
many chunks for the KV cache (bounded window) and the TTT memory (constant size). Without
--checkpoint it builds the `default` configuration (untrained: latency does not depend on the
weights) for the chosen robot, exports it to ONNX and benchmarks that.

JSON keys: backends.<backend>.<mode>.{p50_ms, p99_ms, skipped_steps_mean},
backends.<backend>.available / reason (when a backend cannot run here),
sai.<backend>.<mode>.{blocking_p50_ms, infer_p50_ms, s_mid},
memory.<kv|ttt>.{latency_ratio_last_first, state_bytes_first, state_bytes_last, chunks}:
latency of chunks after `--memory-chunks` chunks of one episode over latency near the start of
an episode, measured interleaved (see _memory_growth).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from wam_ros.core.settings import MEMORIES


def _percentiles(times: list[float]) -> dict[str, float]:
    ms = np.asarray(times) * 1000.0
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def build_default_checkpoint(out: Path, robot: str) -> Path:
    """Untrained `default`-size checkpoint with plausible statistics, exported to ONNX."""
    import torch

    from wam_ros.core.robot import RobotSpec
    from wam_ros.model.checkpoint import save_checkpoint
    from wam_ros.model.config import load_config, with_robot
    from wam_ros.model.export import export_onnx
    from wam_ros.model.wam import WorldActionModel

    spec = RobotSpec.load(robot)
    cfg, _ = load_config("default")
    cfg = with_robot(cfg, robot=spec.name, action_layout=spec.action_layout,
                     camera_names=spec.camera_names, dt=spec.action_dt)
    torch.manual_seed(0)
    model = WorldActionModel(cfg).eval()
    with torch.no_grad():
        feats = model.encoder(torch.rand(4, 3, *cfg.image_size) * 255).flatten(0, 1)
        model.feat_mean.copy_(feats.mean(0))
        model.feat_std.copy_(feats.std(0).clamp(min=1e-3))
    save_checkpoint(model, out)
    export_onnx(out, log=lambda *_: None)
    return out


def _observations(policy: Any, n: int) -> list[Any]:
    from wam_ros.testing.checkpoints import fake_observation

    return [fake_observation(policy.meta.robot, policy.meta.image_size, i) for i in range(n)]


def run_model(args: argparse.Namespace) -> int:
    from wam_ros.runtime import load_policy
    from wam_ros.runtime.backends import BackendUnavailable

    tmp = None
    if args.checkpoint:
        ckpt = Path(args.checkpoint)
        if not (ckpt / "onnx" / "encode.onnx").is_file():
            from wam_ros.model.export import export_onnx

            export_onnx(ckpt)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="wam_bench_")
        print("building the default-size checkpoint (untrained) and its ONNX export ...")
        ckpt = build_default_checkpoint(Path(tmp.name) / "ckpt", args.robot)
    backends = [b for b in args.backends.split(",") if b]
    modes = [m for m in args.modes.split(",") if m]
    import onnxruntime
    import torch

    from wam_ros.model.checkpoint import read_checkpoint_config

    cfg, _ = read_checkpoint_config(ckpt)
    result: dict[str, Any] = {
        "checkpoint": str(args.checkpoint or "default (untrained)"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                    "cuda": torch.cuda.is_available()},
        "config": {"encoder": cfg.encoder, "cameras": len(cfg.camera_names),
                   "image_size": list(cfg.image_size), "horizon": cfg.horizon,
                   "d_model": cfg.d_model, "n_layers": cfg.n_layers,
                   "flow_steps": args.flow_steps, "memory_window": cfg.memory_window},
        "backends": {}, "sai": {}, "memory": {},
    }
    n_obs = args.warmup + args.chunks
    for backend in backends:
        entry: dict[str, Any] = {}
        result["backends"][backend] = entry
        for mode in modes:
            try:
                policy = load_policy(ckpt, backend=backend, memory="kv", mode=mode,
                                     flow_steps=args.flow_steps)
            except BackendUnavailable as exc:
                entry.clear()
                entry.update({"available": False, "reason": str(exc)})
                print(f"{backend}: not available ({exc})")
                break
            obs = _observations(policy, n_obs + 1)
            times, skipped = [], []
            for i, o in enumerate(obs[:n_obs]):
                chunk = policy.infer(o)
                if i >= args.warmup:
                    times.append(chunk.inference_time)
                    skipped.append(chunk.extras.get("skipped_steps", 0.0))
            entry[mode] = {**_percentiles(times),
                           "skipped_steps_mean": round(float(np.mean(skipped)), 3)}
            print(f"{backend:12s} {mode:10s} p50 {entry[mode]['p50_ms']:8.2f} ms  "
                  f"p99 {entry[mode]['p99_ms']:8.2f} ms  skipped {np.mean(skipped):.2f}")
            # SAI: blocking latency once the observation arrives, half the steps speculated
            policy.reset()
            policy.infer(obs[0])
            blocking = []
            for o in obs[1:n_obs]:
                handle = policy.speculate(0.5)
                blocking.append(policy.complete(handle, o).blocking_time)
            result["sai"].setdefault(backend, {})[mode] = {
                "s_mid": 0.5, "blocking_p50_ms": _percentiles(blocking[args.warmup:])["p50_ms"],
                "infer_p50_ms": entry[mode]["p50_ms"]}
        if entry and "available" not in entry:
            entry["available"] = True

    mem_backend = "onnxruntime" if "onnxruntime" in backends else backends[0]
    for memory in MEMORIES:
        result["memory"][memory] = _memory_growth(ckpt, mem_backend, memory, args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")
    if tmp is not None:
        tmp.cleanup()
    return 0


def _memory_growth(ckpt: Path, backend: str, memory: str, args: argparse.Namespace,
                   ) -> dict[str, Any]:
    """Run one long episode, then time its chunks interleaved with chunks of a fresh episode.

    Interleaving makes the last/first latency ratio insensitive to other load on the machine
    (a sequential first-100 vs last-100 comparison minutes apart mostly measures that load);
    the sequential ratio is reported too.
    """
    from wam_ros.runtime import load_policy

    long_run = load_policy(ckpt, backend=backend, memory=memory, mode="fast",
                           flow_steps=args.flow_steps)
    fresh = load_policy(ckpt, backend=backend, memory=memory, mode="fast",
                        flow_steps=args.flow_steps)
    obs = _observations(long_run, 64)
    times, sizes = [], []
    t0 = time.perf_counter()
    for i in range(args.memory_chunks):
        times.append(long_run.infer(obs[i % len(obs)]).inference_time)
        sizes.append(long_run.memory_state_bytes)
    k = max(1, min(100, args.memory_chunks // 4))
    late, early = [], []
    for i in range(k):
        if i % 8 == 0:
            fresh.reset()  # keep the fresh episode near its start
        early.append(fresh.infer(obs[i % len(obs)]).inference_time)
        late.append(long_run.infer(obs[i % len(obs)]).inference_time)
    first, last = float(np.median(early)), float(np.median(late))
    seq_first = float(np.median(times[min(5, len(times) - 1):][:k]))
    seq_last = float(np.median(times[-k:]))
    print(f"memory {memory}: {args.memory_chunks} chunks in {time.perf_counter() - t0:.1f} s, "
          f"latency after {args.memory_chunks} chunks / at episode start "
          f"{last / first:.3f} (sequential {seq_last / seq_first:.3f}), "
          f"state bytes {sizes[0]} -> {sizes[-1]} (max {max(sizes)})")
    return {
        "backend": backend, "mode": "fast", "chunks": args.memory_chunks,
        "latency_ratio_last_first": round(last / first, 4),
        "latency_first_ms": round(first * 1000, 3), "latency_last_ms": round(last * 1000, 3),
        "latency_ratio_sequential": round(seq_last / seq_first, 4),
        "state_bytes_first": int(sizes[0]), "state_bytes_last": int(sizes[-1]),
        "state_bytes_max": int(max(sizes)),
    }
