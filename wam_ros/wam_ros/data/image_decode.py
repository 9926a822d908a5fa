"""Image decoding of deserialised sensor_msgs messages (from a bag, through data.cdr) into the
(H, W, 3) uint8 RGB arrays the dataset stores. ROS-free: the message is rosbags' object.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def image_to_rgb(msg: Any) -> np.ndarray:
    """A deserialised sensor_msgs Image (rgb8 | bgr8 | mono8) or CompressedImage (jpeg | png)
    -> (H, W, 3) uint8 RGB; ValueError names what is wrong."""
    import cv2

    if hasattr(msg, "format"):  # CompressedImage
        bgr = cv2.imdecode(np.asarray(msg.data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"could not decode {len(msg.data)} bytes as {msg.format!r}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    channels = {"rgb8": 3, "bgr8": 3, "mono8": 1}.get(msg.encoding)
    if channels is None:
        raise ValueError(f"unsupported encoding {msg.encoding!r}; allowed: rgb8, bgr8, mono8")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.asarray(msg.data, np.uint8)
    if h == 0 or w == 0 or step < w * channels or data.size != step * h:
        raise ValueError(f"image {w}x{h} step {step} with {data.size} bytes is inconsistent")
    rows = data.reshape(h, step)[:, : w * channels]
    if channels == 1:
        return np.repeat(rows.reshape(h, w, 1), 3, axis=2)
    img = rows.reshape(h, w, 3)
    return np.ascontiguousarray(img[:, :, ::-1]) if msg.encoding == "bgr8" else img


__all__ = ["image_to_rgb"]
