"""Image preparation for the model: resize or centre-crop-and-resize to the model input."""

from __future__ import annotations

import cv2
import numpy as np

RESIZE_MODES = ("resize", "center_crop")


def prepare_image(rgb: np.ndarray, height: int, width: int, mode: str = "center_crop"
                  ) -> np.ndarray:
    """(H, W, 3) uint8 -> (height, width, 3) uint8.

    center_crop keeps the aspect ratio (crops the longer side first), resize stretches.
    INTER_AREA: the right filter for downscaling camera frames (no aliasing).
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode {mode!r}; allowed: {', '.join(RESIZE_MODES)}")
    h, w = rgb.shape[:2]
    if (h, w) == (height, width):
        return rgb
    if mode == "center_crop":
        target = width / height
        if w / h > target:
            new_w = round(h * target)
            x0 = (w - new_w) // 2
            rgb = rgb[:, x0:x0 + new_w]
        else:
            new_h = round(w / target)
            y0 = (h - new_h) // 2
            rgb = rgb[y0:y0 + new_h]
    interp = cv2.INTER_AREA if rgb.shape[0] > height else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(rgb, (width, height), interpolation=interp))
