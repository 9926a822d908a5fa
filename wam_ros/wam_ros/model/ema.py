"""Weight averaging: an exponential moving average of the trained weights (train.ema_decay), the
weights a checkpoint ships with `wam-ros train --ema DECAY`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


class WeightEMA:
    """Exponential moving average of a model's trainable parameters.

    After update n (1-based) each average moves towards the parameter by 1 - d with
    d = min(decay, (1 + n) / (10 + n)): early updates follow the weights closely, later ones
    average over about 1 / (1 - decay) steps. Buffers (normalisation statistics) are not
    averaged; `applied` lends the model the averages for evaluating or saving."""

    def __init__(self, model: torch.nn.Module, decay: float, updates: int = 0) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay: got {decay}; allowed: 0 < decay < 1")
        self.decay, self.updates = float(decay), int(updates)
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters()
                       if p.requires_grad}

    def rate(self) -> float:
        """The decay the next update uses."""
        n = self.updates + 1
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        d = self.rate()
        self.updates += 1
        for name, p in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(p.detach(), 1.0 - d)

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module,
                weights: dict[str, torch.Tensor] | None = None) -> None:
        """Write the averages (or `weights`, same names) into the model's parameters."""
        params = dict(model.named_parameters())
        for n, v in (self.shadow if weights is None else weights).items():
            params[n].copy_(v)

    @contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """The model with the averaged weights inside the block, its own ones after."""
        params = dict(model.named_parameters())
        saved = {n: params[n].detach().clone() for n in self.shadow}
        self.copy_to(model)
        try:
            yield model
        finally:
            self.copy_to(model, saved)
