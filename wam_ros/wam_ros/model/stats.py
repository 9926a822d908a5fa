"""Normalisation statistics for training: measured on the training windows (`compute_stats`),
and the check that a fine-tuned checkpoint's own statistics still cover new data
(`check_stats_cover`).
"""

from __future__ import annotations

from typing import Any

import torch

from wam_ros.core.config import ConfigError
from wam_ros.data.windows import WindowDataset
from wam_ros.model.batches import collate, model_actions, object_targets
from wam_ros.model.wam import WorldActionModel


def compute_stats(model: WorldActionModel, data: WindowDataset, n: int, device: torch.device,
                  latent_encoder: Any = None) -> dict[str, torch.Tensor]:
    feats, states, acts, objects = [], [], [], []
    step = max(1, len(data) // n)
    with torch.no_grad():
        for i in range(0, min(len(data), n * step), step):
            batch = collate([data[i]])
            if not model.bounded_tokens:
                img = batch["images"].to(device, torch.float32).flatten(0, 1)
                f = model.raw_tokens(img.flatten(0, 1))
                feats.append(f.reshape(-1, f.shape[-1]))
            st = batch["state"].to(device)
            states.append(st.reshape(-1, st.shape[-1]))
            a = model_actions(model.cfg, batch["actions"].to(device), st, latent_encoder)
            acts.append(a.reshape(-1, a.shape[-1]))
            if model.object_head is not None:
                o = object_targets(batch["objects"].to(device))
                objects.append(o.reshape(-1, o.shape[-1]))

    def ms(x: list[torch.Tensor], floor: float) -> tuple[torch.Tensor, torch.Tensor]:
        cat = torch.cat(x)
        return cat.mean(0), cat.std(0).clamp(min=floor)

    out = {}
    for name, xs, floor in (("feat", feats, 1e-3), ("state", states, 1e-2),
                            ("action", acts, 1e-3), ("object", objects, 1e-2)):
        if xs:
            mean, std = ms(xs, floor)
            out[f"{name}_mean"], out[f"{name}_std"] = mean.cpu(), std.cpu()
    if model.bounded_tokens:
        # coordinates in [-1, 1] whose spread the training itself sets: statistics of the
        # untrained encoder would only distort them
        out["feat_mean"] = torch.zeros(model.feature_dim)
        out["feat_std"] = torch.full((model.feature_dim,), 0.5)
    return out


def check_stats_cover(model: WorldActionModel, stats: dict[str, torch.Tensor], ckpt: str,
                      limit: float = 10.0) -> None:
    """Fine-tuning keeps the checkpoint's normalisation; refuse data whose states or actions
    it would blow up: a dimension spread (or off-centre) by more than `limit` of the
    checkpoint's standard deviation (an arm that never moved in its data, say)."""
    names = list(model.cfg.action_layout)
    for kind in ("state", "action"):
        mean, std = getattr(model, f"{kind}_mean"), getattr(model, f"{kind}_std")
        spread = torch.maximum(stats[f"{kind}_std"] / std,
                               (stats[f"{kind}_mean"] - mean).abs() / std)
        worst = int(spread.argmax())
        if float(spread[worst]) > limit:
            label = names[worst] if spread.numel() == len(names) else f"#{worst}"
            raise ConfigError(
                f"--init {ckpt}: the data's {kind} {label} spreads {float(spread[worst]):.0f}x "
                f"the checkpoint's standard deviation ({float(std[worst]):.3g}); its "
                "normalisation does not fit this data: pass --new-stats")
