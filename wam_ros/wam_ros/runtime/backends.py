"""Inference backends, chosen by name. Each runs the model's inference pieces on numpy arrays:

    encode(images (1, ncam, 3, H, W) f32 0..255)              -> obs tokens (1, n_obs, Cf)
    context_kv(obs, state, task, pos, past_k, past_v, bias)   -> ctx_k, ctx_v (L, 1, h, n_ctx, hd)
    context_ttt(obs, state, task, pos, prev, has_prev, w)     -> ctx_k, ctx_v, w_new
    step_latent(x, s, pos, prefix_k, prefix_v, bias, w|None)  -> v_lat, lat_k, lat_v
    step_action(x, s, pos, prefix_k, prefix_v, bias, w|None)  -> v_act
    absorb_latent(w, x_lat)                                   -> w_new
w is the TTT fast-weight tuple (W1 (1, d, m), b1 (1, m), W2 (1, m, d), b2 (1, d)).
The flow-matching loop, memory and step caching live in runtime.policy and are shared.

- `torch`: eager PyTorch on the checkpoint (optionally torch.compile'd).
- `onnxruntime`: the graphs `wam-ros export --format onnx` writes into CKPT/onnx/.
- `tensorrt`: the same ONNX graphs through ONNX Runtime's TensorRT execution provider, which
  builds (and caches) TensorRT engines from them; needs TensorRT and a CUDA GPU.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file as load_numpy

from wam_ros.core.settings import LOCAL_BACKENDS as BACKENDS
from wam_ros.model.config import ModelConfig

Weights = tuple[np.ndarray, ...]


class BackendUnavailable(RuntimeError):
    """The backend cannot run on this machine (missing library or GPU)."""


class TorchBackend:
    name = "torch"

    def __init__(self, ckpt_dir: str | Path, device: str = "cpu", compile: bool = False) -> None:
        from wam_ros.model.checkpoint import load_model

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable("device 'cuda' requested but torch sees no CUDA GPU")
        self.device = torch.device(device)
        self.model = load_model(ckpt_dir, device)
        self.cfg: ModelConfig = self.model.cfg
        self._enc: Any = self.model.encode
        if compile:
            self._enc = torch.compile(self.model.encode)

    def _t(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(self.device)

    def _w(self, w: Weights | None) -> tuple[torch.Tensor, ...] | None:
        return None if w is None else tuple(self._t(a) for a in w)

    @staticmethod
    def _n(*xs: torch.Tensor) -> tuple[np.ndarray, ...]:
        return tuple(x.detach().cpu().numpy() for x in xs)

    @torch.inference_mode()
    def encode(self, images: np.ndarray) -> np.ndarray:
        return self._n(self._enc(self._t(images)))[0]

    @torch.inference_mode()
    def task_vector(self, task: str) -> np.ndarray:
        return self._n(self.model.task_vector([task]))[0]

    @torch.inference_mode()
    def ttt_initial(self) -> Weights:
        return self._n(*self.model.ttt.initial(1))

    @torch.inference_mode()
    def context_kv(self, obs, state, task, pos, past_k, past_v, past_bias):
        k, v, _ = self.model.context(self._t(obs), self._t(state), self._t(task), self._t(pos),
                                     self._t(past_k), self._t(past_v), self._t(past_bias))
        return self._n(k, v)

    @torch.inference_mode()
    def context_ttt(self, obs, state, task, pos, prev, has_prev, w):
        k, v, w2 = self.model.context(self._t(obs), self._t(state), self._t(task), self._t(pos),
                                      w=self._w(w), prev_actions=self._t(prev),
                                      has_prev=self._t(has_prev))
        return (*self._n(k, v), self._n(*w2))

    @torch.inference_mode()
    def step_latent(self, x, s, pos, pk, pv, bias, w=None):
        out = self.model.step_latent(self._t(x), self._t(s), self._t(pos), self._t(pk),
                                     self._t(pv), self._t(bias), self._w(w))
        return self._n(*out)

    @torch.inference_mode()
    def step_action(self, x, s, pos, pk, pv, bias, w=None):
        out = self.model.step_action(self._t(x), self._t(s), self._t(pos), self._t(pk),
                                     self._t(pv), self._t(bias), self._w(w))
        return self._n(out)[0]

    @torch.inference_mode()
    def absorb_latent(self, w, x):
        return self._n(*self.model.absorb_latent(self._w(w), self._t(x)))


class OnnxBackend:
    """Runs CKPT/onnx/*.onnx; providers: CPU, or CUDA / TensorRT where available."""

    name = "onnxruntime"

    def __init__(self, ckpt_dir: str | Path, device: str = "cpu",
                 providers: list[Any] | None = None, threads: int = 0) -> None:
        import onnxruntime as ort

        from wam_ros.model.checkpoint import read_checkpoint_config
        from wam_ros.model.wam import task_bucket_ids

        self._bucket_ids = task_bucket_ids
        ckpt = Path(ckpt_dir)
        self.cfg, _ = read_checkpoint_config(ckpt)
        onnx_dir = ckpt / "onnx"
        if not (onnx_dir / "encode.onnx").is_file():
            raise FileNotFoundError(
                f"{onnx_dir}: no ONNX export; run `wam-ros export {ckpt} --format onnx`")
        if providers is None:
            providers = ["CPUExecutionProvider"]
            if device.startswith("cuda"):
                if "CUDAExecutionProvider" not in ort.get_available_providers():
                    raise BackendUnavailable("onnxruntime here has no CUDAExecutionProvider "
                                             "(install onnxruntime-gpu)")
                providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        opts = ort.SessionOptions()
        # no busy-waiting worker threads: the renderer / ROS executor share these cores
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.intra_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sessions = {
            p.stem: ort.InferenceSession(str(p), opts, providers=providers)
            for p in sorted(onnx_dir.glob("*.onnx"))
        }
        weights = load_numpy(str(ckpt / "model.safetensors"))
        self._task_table = weights["task_emb.weight"].astype(np.float32)
        self._ttt0 = tuple(weights[f"ttt.{n}"][None].astype(np.float32)
                           for n in ("w1", "b1", "w2", "b2"))

    def _run(self, name: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        sess = self.sessions.get(name)
        if sess is None:
            raise FileNotFoundError(f"ONNX graph {name}.onnx missing from the export")
        wanted = {i.name for i in sess.get_inputs()}
        if wanted != set(feeds):  # an export from another version of the model
            raise ValueError(f"{name}.onnx takes inputs {sorted(wanted)}, the runtime feeds "
                             f"{sorted(feeds)}: re-export the checkpoint (wam-ros export)")
        return sess.run(None, {k: np.ascontiguousarray(v, dtype=np.float32)
                               for k, v in feeds.items()})

    @staticmethod
    def _wfeed(w: Weights | None) -> dict[str, np.ndarray]:
        if w is None:
            return {}
        return dict(zip(("w1", "b1", "w2", "b2"), w))

    def encode(self, images: np.ndarray) -> np.ndarray:
        return self._run("encode", {"images": images})[0]

    def task_vector(self, task: str) -> np.ndarray:
        ids = self._bucket_ids(task, self.cfg.task_buckets)
        return self._task_table[ids].mean(0, keepdims=True)

    def ttt_initial(self) -> Weights:
        return self._ttt0

    def context_kv(self, obs, state, task, pos, past_k, past_v, past_bias):
        k, v = self._run("context_kv", {"obs": obs, "state": state, "task": task, "pos": pos,
                                        "past_k": past_k, "past_v": past_v,
                                        "past_bias": past_bias})
        return k, v

    def context_ttt(self, obs, state, task, pos, prev, has_prev, w):
        out = self._run("context_ttt", {"obs": obs, "state": state, "task": task, "pos": pos,
                                        "prev_actions": prev, "has_prev": has_prev,
                                        **self._wfeed(w)})
        return out[0], out[1], tuple(out[2:])

    def step_latent(self, x, s, pos, pk, pv, bias, w=None):
        name = "step_latent_kv" if w is None else "step_latent_ttt"
        v, k, vv = self._run(name, {"x": x, "s": s, "pos": pos, "prefix_k": pk,
                                    "prefix_v": pv, "prefix_bias": bias, **self._wfeed(w)})
        return v, k, vv

    def step_action(self, x, s, pos, pk, pv, bias, w=None):
        name = "step_action_kv" if w is None else "step_action_ttt"
        return self._run(name, {"x": x, "s": s, "pos": pos, "prefix_k": pk, "prefix_v": pv,
                                "prefix_bias": bias, **self._wfeed(w)})[0]

    def absorb_latent(self, w, x):
        return tuple(self._run("absorb_latent", {"x": x, **self._wfeed(w)}))


def tensorrt_providers(cache_dir: Path) -> list[Any]:
    """ONNX Runtime providers that build TensorRT engines; clear error if impossible."""
    import onnxruntime as ort

    if importlib.util.find_spec("tensorrt") is None:
        raise BackendUnavailable(
            "backend 'tensorrt' needs the TensorRT Python package (pip install tensorrt, from "
            "NVIDIA's index) and a CUDA GPU; use backend 'onnxruntime' or 'torch' here")
    if not torch.cuda.is_available():
        raise BackendUnavailable("backend 'tensorrt' needs a CUDA GPU; none is visible")
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        raise BackendUnavailable(
            "onnxruntime here lacks TensorrtExecutionProvider (install onnxruntime-gpu built "
            f"with TensorRT); available: {', '.join(ort.get_available_providers())}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    trt_opts = {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir),
                "trt_fp16_enable": True}
    return [("TensorrtExecutionProvider", trt_opts), "CUDAExecutionProvider",
            "CPUExecutionProvider"]


def make_backend(name: str, ckpt_dir: str | Path, device: str = "cpu",
                 compile: bool = False, threads: int = 0) -> Any:
    """threads: intra-op threads (0: the library's default, one per core); for torch this
    sets the process's pool (torch.set_num_threads)."""
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0: the backend's default), got {threads}")
    if name == "torch":
        if threads:
            torch.set_num_threads(threads)
        return TorchBackend(ckpt_dir, device, compile=compile)
    if name == "onnxruntime":
        return OnnxBackend(ckpt_dir, device, threads=threads)
    if name == "tensorrt":
        providers = tensorrt_providers(Path(ckpt_dir) / "tensorrt_cache")
        backend = OnnxBackend(ckpt_dir, "cuda", providers=providers, threads=threads)
        backend.name = "tensorrt"
        return backend
    raise ValueError(f"unknown backend {name!r}; allowed: {', '.join(BACKENDS)}")
