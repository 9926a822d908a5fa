"""Ways to average a 480x480 centre crop of a 640x480 rgb8 frame down to 96x96 (the observation
node's resize for the shipped checkpoints), each checked pixel for pixel against
cv2.resize(INTER_AREA) on random frames, and timed on one thread (an experiment, not part of
the package):

    python docs/results/2026-12-06-camera-leg/resize_variants.py
"""

from __future__ import annotations

import time

import cv2
import numpy as np

F = 5  # 480 / 96


def inter_area(crop):  # what core.image.prepare_image does
    return cv2.resize(crop, (96, 96), interpolation=cv2.INTER_AREA)


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
    variants = (inter_area, box_filter, integral, row_sums)
    for fn in variants[1:]:
        same = all(np.array_equal(inter_area(c), fn(c)) for c in (
            rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)[:, 80:560] for _ in range(50)))
        verdict = "identical to" if same else "DIFFERS from"
        print(f"{fn.__name__}: {verdict} INTER_AREA on 50 frames")
    crop = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)[:, 80:560]
    for _ in range(3):
        for fn in variants:
            t = time.perf_counter()
            for _ in range(1000):
                fn(crop)
            print(f"{fn.__name__:11s} {(time.perf_counter() - t):.3f} ms per frame")


if __name__ == "__main__":
    main()
