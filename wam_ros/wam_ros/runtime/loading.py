"""Loading a policy from a checkpoint: backend, memory and mode checked against the registries
(core.settings), the checkpoint's model config and normalisation statistics."""

from __future__ import annotations

from pathlib import Path

from wam_ros.core.settings import MEMORIES, MODES
from wam_ros.runtime.backends import BACKENDS, make_backend
from wam_ros.runtime.policy import Policy


def load_policy(checkpoint_dir: str | Path, backend: str = "torch", memory: str = "kv",
                mode: str = "joint", flow_steps: int | None = 4, device: str = "cpu",
                step_cache_threshold: float | None = None, seed: int = 0,
                compile: bool = False, memory_stride: float | None = None,
                noise_scale: float | None = None, threads: int = 0) -> Policy:
    """A ready policy. Unknown backend / memory / mode names raise ValueError listing choices.
    flow_steps / noise_scale None: the checkpoint's (model.flow_steps, model.noise_scale).
    threads: the backend's intra-op threads (0: its default)."""
    from wam_ros.model.checkpoint import load_stats, read_checkpoint_config

    for what, value, allowed in (("backend", backend, BACKENDS), ("memory", memory, MEMORIES),
                                 ("mode", mode, MODES)):
        if value not in allowed:
            raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(allowed)}")
    cfg, _ = read_checkpoint_config(checkpoint_dir)
    be = make_backend(backend, checkpoint_dir, device, compile=compile, threads=threads)
    return Policy(be, cfg, load_stats(checkpoint_dir), memory=memory, mode=mode,
                  flow_steps=flow_steps, step_cache_threshold=step_cache_threshold, seed=seed,
                  checkpoint=str(checkpoint_dir), memory_stride=memory_stride,
                  noise_scale=noise_scale)
