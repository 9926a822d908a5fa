"""`wam-ros export CKPT --format onnx|tensorrt`: write the inference graphs to CKPT/onnx/.

One graph per inference piece (runtime/backends.py documents their signatures); the flow loop,
memory bookkeeping and step caching stay in Python, shared by every backend:

    encode            images (1, ncam, 3, H, W) f32 0..255 -> obs (1, n_obs, Cf)
    context_kv        obs, state, task, pos, past_k, past_v, past_bias -> ctx_k, ctx_v
    context_ttt       obs, state, task, pos, prev_actions, has_prev, w1, b1, w2, b2
                      -> ctx_k, ctx_v, w1', b1', w2', b2'
    step_latent_{kv,ttt}   x, s, pos, prefix_k, prefix_v, prefix_bias[, w..] -> v, k, v_
    step_action_{kv,ttt}   x, s, pos, prefix_k, prefix_v, prefix_bias[, w..] -> v
    absorb_latent     x, w1, b1, w2, b2 -> w1', b1', w2', b2'
Memory state goes in and out as tensors (KV cache, TTT fast weights), so the graphs are pure
functions. The prefix length is a dynamic axis (context, + latent for joint/two-stage).
`--format tensorrt` exports ONNX and then builds the TensorRT engines (through ONNX Runtime's
TensorRT execution provider, cached in CKPT/tensorrt_cache/) by running one warm-up chunk.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from wam_ros.core.settings import MEMORIES, MODES
from wam_ros.model.checkpoint import load_model
from wam_ros.model.wam import WorldActionModel

OPSET = 17


class _Encode(nn.Module):
    def __init__(self, m: WorldActionModel) -> None:
        super().__init__()
        self.m = m

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.m.encode(images)


class _ContextKV(_Encode):
    def forward(self, obs, state, task, pos, past_k, past_v, past_bias):
        k, v, _ = self.m.context(obs, state, task, pos, past_k, past_v, past_bias)
        return k, v


class _ContextTTT(_Encode):
    def forward(self, obs, state, task, pos, prev_actions, has_prev, w1, b1, w2, b2):
        k, v, w = self.m.context(obs, state, task, pos, w=(w1, b1, w2, b2),
                                 prev_actions=prev_actions, has_prev=has_prev)
        return (k, v, *w)


class _StepLatent(_Encode):
    def forward(self, x, s, pos, prefix_k, prefix_v, prefix_bias, *w):
        return self.m.step_latent(x, s, pos, prefix_k, prefix_v, prefix_bias,
                                  tuple(w) if w else None)


class _StepAction(_Encode):
    def forward(self, x, s, pos, prefix_k, prefix_v, prefix_bias, *w):
        return self.m.step_action(x, s, pos, prefix_k, prefix_v, prefix_bias,
                                  tuple(w) if w else None)


class _Absorb(_Encode):
    def forward(self, x, w1, b1, w2, b2):
        return self.m.absorb_latent((w1, b1, w2, b2), x)


W_NAMES = ["w1", "b1", "w2", "b2"]


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
            dynamic: dict[str, dict[int, str]] | None = None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about python scalars
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic or {}, opset_version=OPSET, dynamo=False,
                          do_constant_folding=True)


def export_onnx(ckpt_dir: str | Path, log=print) -> Path:
    """Write CKPT/onnx/*.onnx; returns the folder."""
    ckpt = Path(ckpt_dir)
    model = load_model(ckpt)
    cfg = model.cfg
    out = ckpt / "onnx"
    out.mkdir(exist_ok=True)
    h, w = cfg.image_size
    ncam, n_obs, n_ctx = len(cfg.camera_names), cfg.n_obs_tokens, cfg.n_ctx_tokens
    L, heads, hd = cfg.n_layers, cfg.n_heads, cfg.d_model // cfg.n_heads
    cf, a, dim, d = model.feature_dim, cfg.model_action_dim, cfg.action_dim, cfg.d_model
    past = (cfg.memory_window - 1) * n_ctx
    f = torch.float32
    obs = torch.randn(1, n_obs, cf)
    state, task, pos = torch.randn(1, dim), torch.randn(1, d), torch.tensor([3.0])
    past_k, past_v = torch.randn(L, 1, heads, past, hd), torch.randn(L, 1, heads, past, hd)
    past_bias = torch.zeros(1, past, dtype=f)
    wts = tuple(t.detach().clone() for t in model.ttt.initial(1))
    pk, pv = torch.randn(L, 1, heads, n_ctx + n_obs, hd), torch.randn(L, 1, heads,
                                                                       n_ctx + n_obs, hd)
    pb = torch.zeros(1, n_ctx + n_obs)
    x_lat, x_act, s = torch.randn(1, n_obs, cf), torch.randn(1, cfg.horizon, a), torch.rand(1)
    prefix_dyn = {"prefix_k": {3: "prefix"}, "prefix_v": {3: "prefix"},
                  "prefix_bias": {1: "prefix"}}
    step_in = ["x", "s", "pos", "prefix_k", "prefix_v", "prefix_bias"]
    with torch.no_grad():
        _export(_Encode(model), (torch.rand(1, ncam, 3, h, w) * 255,), out / "encode.onnx",
                ["images"], ["obs"])
        _export(_ContextKV(model), (obs, state, task, pos, past_k, past_v, past_bias),
                out / "context_kv.onnx",
                ["obs", "state", "task", "pos", "past_k", "past_v", "past_bias"],
                ["ctx_k", "ctx_v"])
        prev, has_prev = torch.randn(1, cfg.horizon, a), torch.ones(1)
        _export(_ContextTTT(model), (obs, state, task, pos, prev, has_prev, *wts),
                out / "context_ttt.onnx",
                ["obs", "state", "task", "pos", "prev_actions", "has_prev", *W_NAMES],
                ["ctx_k", "ctx_v", *[n + "_out" for n in W_NAMES]])
        for mem, extra in (("kv", ()), ("ttt", wts)):
            names = step_in + (W_NAMES if extra else [])
            _export(_StepLatent(model), (x_lat, s, pos, pk, pv, pb, *extra),
                    out / f"step_latent_{mem}.onnx", names, ["v", "k", "v_"], prefix_dyn)
            _export(_StepAction(model), (x_act, s, pos, pk, pv, pb, *extra),
                    out / f"step_action_{mem}.onnx", names, ["v"], prefix_dyn)
        _export(_Absorb(model), (x_lat, *wts), out / "absorb_latent.onnx", ["x", *W_NAMES],
                [n + "_out" for n in W_NAMES])
    log(f"wrote {len(list(out.glob('*.onnx')))} graphs to {out}")
    return out


def run(args: argparse.Namespace) -> int:
    try:
        export_onnx(args.checkpoint)
        if args.format == "tensorrt":
            from wam_ros.runtime.backends import BackendUnavailable

            try:
                build_tensorrt(args.checkpoint)
            except BackendUnavailable as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def build_tensorrt(ckpt_dir: str | Path) -> None:
    """Build (and cache) the TensorRT engines by running one chunk of each memory/mode."""
    import numpy as np

    from wam_ros.core.robot import RobotSpec
    from wam_ros.core.types import Observation
    from wam_ros.runtime.loading import load_policy

    for memory in MEMORIES:
        for mode in MODES:
            policy = load_policy(ckpt_dir, backend="tensorrt", memory=memory, mode=mode,
                                 device="cuda")
            h, w = policy.meta.image_size
            spec = RobotSpec.load(policy.meta.robot)
            obs = Observation(0.0, {c: np.zeros((h, w, 3), np.uint8)
                                    for c in policy.meta.camera_names}, spec.home_vector())
            policy.infer(obs)
    print(f"TensorRT engines cached in {Path(ckpt_dir) / 'tensorrt_cache'}")
