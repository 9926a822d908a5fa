"""Inference-time memory of the policy runner (numpy, backend-independent).

KVCache (DreamZero): keys/values of the context blocks of past chunks, computed once and reused
by every later chunk. A context block holds the *real* encoded observation: under speculative
inference the chunk is first denoised against a surrogate block built from the model's
predicted latent, and that block is replaced by the encoded real observation before anything
is committed (observation replacement), so predicted content never stays in the cache. The window
is bounded: appending beyond `window_chunks` evicts the oldest block explicitly.

TTTState (CLWM): the long-term fast weights of the TTT layer; fixed size whatever the episode
length. Only `Policy` updates it, and only from real observations.
"""

from __future__ import annotations

from collections import deque

import numpy as np

NEG = np.float32(-1e9)


class KVCache:
    def __init__(self, n_layers: int, heads: int, n_ctx: int, head_dim: int,
                 window_chunks: int) -> None:
        if window_chunks < 1:
            raise ValueError(f"window_chunks must be >= 1, got {window_chunks}")
        self.shape = (n_layers, 1, heads, n_ctx, head_dim)
        self.window_chunks = window_chunks
        self.entries: deque[tuple[np.ndarray, np.ndarray]] = deque()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self.entries)

    def clear(self) -> None:
        self.entries.clear()
        self.evicted = 0

    def append(self, k: np.ndarray, v: np.ndarray) -> None:
        if k.shape != self.shape or v.shape != self.shape:
            raise ValueError(f"context block keys {k.shape}/{v.shape}; expected {self.shape}")
        if len(self.entries) == self.window_chunks:
            self.entries.popleft()  # explicit eviction of the oldest chunk
            self.evicted += 1
        self.entries.append((k.astype(np.float32, copy=False), v.astype(np.float32, copy=False)))

    def padded(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fixed-shape past keys/values (L, 1, h, window*n_ctx, hd) and additive bias
        (1, window*n_ctx): 0 for cached entries, -1e9 for empty slots."""
        n_layers, _, heads, n_ctx, hd = self.shape
        total = self.window_chunks * n_ctx
        k = np.zeros((n_layers, 1, heads, total, hd), np.float32)
        v = np.zeros_like(k)
        bias = np.full((1, total), NEG, np.float32)
        for i, (ek, ev) in enumerate(self.entries):
            sl = slice(i * n_ctx, (i + 1) * n_ctx)
            k[:, :, :, sl], v[:, :, :, sl] = ek, ev
            bias[:, sl] = 0.0
        return k, v, bias

    @property
    def state_bytes(self) -> int:
        return sum(k.nbytes + v.nbytes for k, v in self.entries)


class TTTState:
    def __init__(self, initial: tuple[np.ndarray, ...]) -> None:
        self._initial = tuple(np.array(w, np.float32) for w in initial)
        self.weights = self._initial
        self.updates = 0

    def clear(self) -> None:
        self.weights = self._initial
        self.updates = 0

    def set(self, weights: tuple[np.ndarray, ...]) -> None:
        for new, old in zip(weights, self.weights):
            if new.shape != old.shape:
                raise ValueError(f"fast weight shape {new.shape}; expected {old.shape}")
        self.weights = tuple(np.asarray(w, np.float32) for w in weights)
        self.updates += 1

    @property
    def state_bytes(self) -> int:
        return sum(w.nbytes for w in self.weights)
