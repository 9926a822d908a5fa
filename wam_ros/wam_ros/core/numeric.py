"""Numeric helpers for code that runs on every control tick on a few joints' worth of numbers,
where numpy's per-call overhead, not the arithmetic, is the cost."""

from __future__ import annotations

import numpy as np


def clip(x, lower, upper) -> np.ndarray:
    """np.clip(x, lower, upper) as two ufunc calls, without np.clip's Python wrapper (most of
    the cost of a clip of ~14 values). The same values; the sign of a zero at a bound may
    differ, which no comparison or arithmetic here tells apart."""
    return np.minimum(np.maximum(x, lower), upper)


__all__ = ["clip"]
