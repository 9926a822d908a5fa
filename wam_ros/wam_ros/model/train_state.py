"""The train state a run resumes from (CKPT_DIR/train_state/), without pickle: the optimizer's
tensors as safetensors, its param groups, step and history as JSON, and (with weight averaging)
the raw trained weights, each file written atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

RAW_WEIGHTS = "weights.safetensors"  # train_state/: the trained (not averaged) weights


def save_train_state(out: Path, opt: torch.optim.Optimizer, step: int,
                     history: list[dict[str, float]],
                     model: torch.nn.Module | None = None) -> None:
    """Optimizer state, step and history; `model`: also its raw weights (a run whose
    checkpoint holds averaged ones resumes from these)."""
    d = out / "train_state"
    d.mkdir(parents=True, exist_ok=True)
    if model is not None:
        raw = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(raw, str(d / (RAW_WEIGHTS + ".tmp")))
        os.replace(d / (RAW_WEIGHTS + ".tmp"), d / RAW_WEIGHTS)
    sd = opt.state_dict()
    tensors = {f"{i}.{k}": v.detach().cpu().contiguous()
               for i, st in sd["state"].items() for k, v in st.items()
               if isinstance(v, torch.Tensor)}
    save_file(tensors, str(d / "optimizer.safetensors.tmp"))
    os.replace(d / "optimizer.safetensors.tmp", d / "optimizer.safetensors")
    meta = {"step": step, "param_groups": sd["param_groups"], "history": history}
    (d / "state.json.tmp").write_text(json.dumps(meta))
    os.replace(d / "state.json.tmp", d / "state.json")


def load_train_state(out: Path, opt: torch.optim.Optimizer) -> tuple[int, list[dict]]:
    d = out / "train_state"
    meta = json.loads((d / "state.json").read_text())
    tensors = load_file(str(d / "optimizer.safetensors"))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return int(meta["step"]), list(meta.get("history", []))
