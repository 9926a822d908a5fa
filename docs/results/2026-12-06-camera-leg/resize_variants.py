"""Ways to average a 480x480 centre crop of a 640x480 rgb8 frame down to 96x96 (the observation
node's resize for the shipped checkpoints), each checked pixel for pixel against the node's own
core.image.prepare_image on random frames, and timed on one thread (an experiment, not part of
the package):

    python docs/results/2026-12-06-camera-leg/resize_variants.py
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from wam_ros.core.image import prepare_image

F = 5  # 480 / 96


def crop_of(frame):
    return frame[:, 80:560]


def node_resize(frame):  # the observation node's: crop, then cv2.resize(INTER_AREA)
    return prepare_image(frame, 96, 96, "center_crop")


def box_filter(crop):  # SIMD 5x5 mean at every pixel, then every 5th
    mean = cv2.boxFilter(crop, -1, (F, F), anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(mean[::F, ::F])


def integral(crop):  # summed-area table, four corners per block
    s = cv2.integral(crop)
    block = s[F::F, F::F] - s[:-1:F, F::F] - s[F::F, :-1:F] + s[:-1:F, :-1:F]
    return ((block + F * F // 2) // (F * F)).astype(np.uint8)


def row_sums(crop):  # rows of each block summed in uint16, then columns
    c = crop.astype(np.uint16)
    v = c[0::F] + c[1::F] + c[2::F] + c[3::F] + c[4::F]
    v = v.reshape(96 * 96, F * 3)
    s = v[:, 0:3] + v[:, 3:6] + v[:, 6:9] + v[:, 9:12] + v[:, 12:15]
    return ((s + F * F // 2) // (F * F)).astype(np.uint8).reshape(96, 96, 3)


def main() -> None:
    cv2.setNumThreads(1)  # as the observation node
    rng = np.random.default_rng(0)
    variants = (box_filter, integral, row_sums)
    frames = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(50)]
    for fn in variants:
        same = all(np.array_equal(node_resize(f), fn(crop_of(f))) for f in frames)
        verdict = "identical to" if same else "DIFFERS from"
        print(f"{fn.__name__}: {verdict} prepare_image on 50 frames")
    frame = frames[0]
    for _ in range(3):
        for name, call in [("node_resize", lambda: node_resize(frame))] + [
                (fn.__name__, lambda fn=fn: fn(crop_of(frame))) for fn in variants]:
            t = time.perf_counter()
            for _ in range(1000):
                call()
            print(f"{name:11s} {(time.perf_counter() - t):.3f} ms per frame")


if __name__ == "__main__":
    main()
