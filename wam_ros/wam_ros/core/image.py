"""Images: decoding Image / CompressedImage messages (the nodes' and the bags' one decoder)
and preparing them for the model (resize or centre-crop-and-resize to the model input)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from wam_ros.core.inputs import InputRefused, check_image_size, encoded_image_size

RESIZE_MODES = ("resize", "center_crop")
RAW_ENCODINGS = ("rgb8", "bgr8", "mono8")


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


# ---- decoding image messages: one decoder for the nodes (nodes/conversions.py) and bags ----
class ImageError(InputRefused):
    """An image message that cannot be turned into RGB pixels; `reason` names the kind
    (bad_image unless a more precise one applies: empty, too_large, undecodable)."""

    def __init__(self, message: str, reason: str = "bad_image") -> None:
        super().__init__(reason, message)


def image_to_rgb(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """A sensor_msgs/Image (rclpy's, or rosbags' deserialised one: any object with its fields;
    rgb8 | bgr8 | mono8) -> (H, W, 3) uint8 RGB, validated (at most
    `max_pixels` pixels)."""
    if max_pixels is not None:
        _check_size(msg.width, msg.height, max_pixels)
    if msg.encoding not in RAW_ENCODINGS:
        raise ImageError(
            f"unsupported encoding {msg.encoding!r}; allowed: {', '.join(RAW_ENCODINGS)}"
        )
    channels = 1 if msg.encoding == "mono8" else 3
    if msg.height == 0 or msg.width == 0:
        raise ImageError(f"empty image {msg.width}x{msg.height}", "empty")
    if msg.step < msg.width * channels:
        raise ImageError(f"step {msg.step} < width {msg.width} x {channels} channels")
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size != msg.step * msg.height:
        raise ImageError(
            f"data has {buf.size} bytes, expected step {msg.step} x height {msg.height}"
        )
    rows = buf.reshape(msg.height, msg.step)[:, : msg.width * channels]
    if channels == 1:
        return np.repeat(rows.reshape(msg.height, msg.width, 1), 3, axis=2)
    img = rows.reshape(msg.height, msg.width, 3)
    return img[:, :, ::-1] if msg.encoding == "bgr8" else img


def compressed_to_rgb(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """A sensor_msgs/CompressedImage (any object with its fields; jpeg | png) -> (H, W, 3)
    uint8 RGB. With `max_pixels`, the size the header announces is checked before any pixel
    is decoded (a small file can decode to gigabytes). Every failure is an ImageError, never
    an OpenCV exception."""
    fmt = msg.format.lower()
    if not any(k in fmt for k in ("jpeg", "jpg", "png")):
        raise ImageError(f"unsupported compressed format {msg.format!r}; allowed: jpeg, png")
    data = bytes(msg.data)
    if not data:
        raise ImageError("compressed image with no data", "empty")
    if max_pixels is not None:
        try:
            width, height = encoded_image_size(data)
        except InputRefused as exc:
            raise ImageError(str(exc), exc.reason) from exc
        _check_size(width, height, max_pixels)
    try:
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageError(f"could not decode {len(data)} bytes as {msg.format!r}: "
                         f"{str(exc).strip().splitlines()[-1]}", "undecodable") from exc
    if bgr is None:
        raise ImageError(f"could not decode {len(data)} bytes as {msg.format!r}", "undecodable")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def message_to_rgb(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """An Image or a CompressedImage (told apart by its `format` field) -> (H, W, 3) uint8
    RGB; ImageError (a ValueError) says what is wrong."""
    if hasattr(msg, "format"):
        return compressed_to_rgb(msg, max_pixels)
    return image_to_rgb(msg, max_pixels)


def _check_size(width: int, height: int, max_pixels: int) -> None:
    try:
        check_image_size(width, height, max_pixels)
    except InputRefused as exc:
        raise ImageError(str(exc), exc.reason) from exc


