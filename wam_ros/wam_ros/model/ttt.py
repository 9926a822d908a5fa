"""Dual-State Test-Time-Training memory (CLWM / DexWorldModel, section 4.4).

History lives in the fast weights W = (W1, b1, W2, b2) of a TTT-MLP
f(x; W) = gelu(x W1 + b1) W2 + b2 (hidden = expansion * d, GELU). Absorbing tokens z is one
gradient step on the self-supervised loss

    l_self(W; z) = mean_tokens || f(theta_K z; W) - theta_V z ||^2,     W <- W - eta * grad

and reading is the gated residual  tanh(alpha) * f(theta_Q z; W) + z  with alpha initialised 0.1.
The dual state: long-term W absorbs only real history (the encoded observation, the joint
state and the actions of the chunk that was executed); a working copy forked from it per chunk
may absorb the model's predicted latent (two-stage generation) and is thrown away.

The inner gradient is written out in closed form (not autograd) so the update is an ordinary,
differentiable tensor expression: the outer training loop learns theta, alpha, eta and the
initial W through it, and it exports to ONNX as plain MatMuls. Its size is fixed by d and the
expansion, so the state is O(1) in episode length.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_C = math.sqrt(2.0 / math.pi)

FastWeights = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # W1, b1, W2, b2
FAST_WEIGHT_NAMES = ("ttt_w1", "ttt_b1", "ttt_w2", "ttt_b2")


def _gelu(u: torch.Tensor) -> torch.Tensor:
    return 0.5 * u * (1.0 + torch.tanh(_C * (u + 0.044715 * u**3)))


def _gelu_grad(u: torch.Tensor) -> torch.Tensor:
    t = torch.tanh(_C * (u + 0.044715 * u**3))
    return 0.5 * (1.0 + t) + 0.5 * u * (1.0 - t * t) * _C * (1.0 + 3 * 0.044715 * u * u)


def mlp(x: torch.Tensor, w: FastWeights) -> torch.Tensor:
    """f(x; W) for x (B, N, d) and batched fast weights W1 (B, d, m) ... b2 (B, d)."""
    w1, b1, w2, b2 = w
    return _gelu(x @ w1 + b1[:, None]) @ w2 + b2[:, None]


def _token_weights(k: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """(B, N, 1) weights summing to 1 over the tokens that count (padding has weight 0)."""
    if weight is None:
        weight = torch.ones(k.shape[:2], dtype=k.dtype, device=k.device)
    return (weight / weight.sum(1, keepdim=True).clamp(min=1e-6))[..., None]


def self_loss(k: torch.Tensor, v: torch.Tensor, w: FastWeights,
              weight: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) (weighted) mean over tokens of ||f(k; W) - v||^2."""
    return (((mlp(k, w) - v) ** 2) * _token_weights(k, weight)).sum((-1, -2))


def self_grad(k: torch.Tensor, v: torch.Tensor, w: FastWeights,
              weight: torch.Tensor | None = None) -> FastWeights:
    """Closed-form d l_self / dW for each batch element; weight (B, N) masks tokens."""
    w1, b1, w2, b2 = w
    pre = k @ w1 + b1[:, None]  # (B, N, m)
    h = _gelu(pre)
    err = (h @ w2 + b2[:, None] - v) * (2.0 * _token_weights(k, weight))  # (B, N, d)
    g_w2 = h.transpose(1, 2) @ err  # (B, m, d)
    g_b2 = err.sum(1)
    d_pre = (err @ w2.transpose(1, 2)) * _gelu_grad(pre)  # (B, N, m)
    g_w1 = k.transpose(1, 2) @ d_pre  # (B, d, m)
    g_b1 = d_pre.sum(1)
    return g_w1, g_b1, g_w2, g_b2


class TTTMemory(nn.Module):
    """Projections, gate, inner learning rate and initial fast weights of the TTT layer."""

    def __init__(self, d: int, expansion: int, alpha_init: float, lr_init: float,
                 grad_clip: float) -> None:
        super().__init__()
        m = expansion * d
        self.norm = nn.LayerNorm(d)
        self.theta_k = nn.Linear(d, d, bias=False)
        self.theta_v = nn.Linear(d, d, bias=False)
        self.theta_q = nn.Linear(d, d, bias=False)
        self.alpha = nn.Parameter(torch.full((d,), alpha_init))
        # eta = softplus(eta_raw) > 0
        self.eta_raw = nn.Parameter(torch.tensor(math.log(math.expm1(lr_init))))
        self.grad_clip = grad_clip
        self.w1 = nn.Parameter(torch.randn(d, m) / math.sqrt(d))
        self.b1 = nn.Parameter(torch.zeros(m))
        self.w2 = nn.Parameter(torch.randn(m, d) * (0.1 / math.sqrt(m)))
        self.b2 = nn.Parameter(torch.zeros(d))

    def initial(self, batch: int) -> FastWeights:
        """Fresh long-term state (episode start), expanded over the batch."""
        return tuple(p.unsqueeze(0).expand(batch, *p.shape) for p in
                     (self.w1, self.b1, self.w2, self.b2))  # type: ignore[return-value]

    def absorb(self, w: FastWeights, z: torch.Tensor,
               weight: torch.Tensor | None = None) -> FastWeights:
        """One inner gradient step on tokens z (B, N, d) (token weights (B, N), 0 = ignore);
        returns the new fast weights."""
        x = self.norm(z)
        k, v = self.theta_k(x), self.theta_v(x)
        grads = self_grad(k, v, w, weight)
        sq = sum((g.flatten(1) ** 2).sum(1) for g in grads)  # (B,)
        scale = torch.clamp(self.grad_clip / torch.sqrt(sq + 1e-12), max=1.0)  # norm clip
        eta = F.softplus(self.eta_raw) * scale
        return tuple(p - eta.view(-1, *([1] * (p.dim() - 1))) * g
                     for p, g in zip(w, grads))  # type: ignore[return-value]

    def read(self, w: FastWeights, z: torch.Tensor) -> torch.Tensor:
        """Gated residual tanh(alpha) * f(theta_Q z; W) + z."""
        return torch.tanh(self.alpha) * mlp(self.theta_q(self.norm(z)), w) + z
