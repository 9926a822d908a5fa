"""DiT step caching for the flow integration: reuse the last velocity when successive ones
barely change (counted in chunk.extras["skipped_steps"])."""

from __future__ import annotations

import numpy as np


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a.ravel(), b.ravel()) / den) if den > 0 else 0.0

class StepCache:
    """DiT step caching: reuse the last velocity when successive ones barely change."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.history: list[np.ndarray] = []
        self.skipped = 0
        self._just_skipped = False

    def reset(self) -> None:
        self.history.clear()
        self._just_skipped = False

    def reuse(self) -> np.ndarray | None:
        if self._just_skipped or len(self.history) < 2 or self.threshold > 1.0:
            self._just_skipped = False
            return None
        if _cos(self.history[-1], self.history[-2]) > self.threshold:
            self.skipped += 1
            self._just_skipped = True
            return self.history[-1]
        return None

    def record(self, v: np.ndarray) -> None:
        self.history.append(v)
        self._just_skipped = False
