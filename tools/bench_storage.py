"""Image storage raw vs JPEG: size on disk and training throughput, side by side.

    .venv/bin/python tools/bench_storage.py DATA [--steps 30] [--quality 95] [--work DIR]

DATA: one of our datasets with raw images (e.g. `wam-ros sim generate --image-size 96 96`).
Recodes it to JPEG (wam-ros dataset recode), then, alternating between the copies --repeats
times (a loaded machine drifts): the data path alone (training windows of batch 16 sampled as
the trainer samples them, images read and decoded: windows/s) and whole training steps of the
tiny model at the dataset's image size (same seed, batch and windows: steps/s, after 3 warm-up
steps). Prints a Markdown table with bytes per frame and in total, the medians, and the mean
absolute pixel error of the JPEG copy. Both copies sit in the page cache (warm reads).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _windows_per_s(data: Path, batches: int = 20) -> float:
    """Training windows (tiny config: 4 chunks of 8) read and decoded per second."""
    from wam_ros.data.dataset_reader import open_dataset
    from wam_ros.data.windows import WindowDataset

    reader = open_dataset(data)
    ds = WindowDataset(reader, list(range(len(reader))), horizon=8, chunks=4,
                       samples_per_epoch=10**9, seed=0)
    for i in range(16):  # warm-up: handles opened
        ds[i]
    t0 = time.perf_counter()
    n = 16 * batches
    for i in range(16, 16 + n):
        ds[i]
    return n / (time.perf_counter() - t0)


def _steps_per_s(data: Path, out: Path, steps: int, image_size: tuple[int, int]) -> float:
    from wam_ros.model.config import load_config
    from wam_ros.model.train import train

    marks: list[float] = []

    class Clock:  # the training loop's progress bar is replaced by a step clock
        def __call__(self, *_: object) -> None:
            pass

    mcfg, tcfg = load_config("tiny")
    mcfg.image_size = image_size
    tcfg.steps, tcfg.val_every, tcfg.save_every = steps, 10**9, 10**9
    tcfg.val_batches, tcfg.stats_samples = 1, 16
    import wam_ros.model.train as train_mod

    original = train_mod.collate

    def timed_collate(items):  # called once per training step (and for validation)
        marks.append(time.perf_counter())
        return original(items)

    train_mod.collate = timed_collate
    try:
        train(data, (mcfg, tcfg), out, progress=False, log=Clock())
    finally:
        train_mod.collate = original
    # marks: stats sampling does not collate; validation at step 0 (1 batch), then one per
    # step, then the final validation (1 batch): steps between warm-up and the end
    step_marks = marks[1: 1 + steps]
    warm = 3
    return (len(step_marks) - 1 - warm) / (step_marks[-1] - step_marks[warm])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--quality", type=int, default=95)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--work", help="folder for the JPEG copy and runs (default: a temporary one)")
    args = p.parse_args(argv)
    from wam_ros.data.dataset_reader import EpisodeReader
    from wam_ros.data.dataset_writer import recode_dataset

    raw = Path(args.data)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_storage_"))
    jpeg = work / "jpeg"
    if jpeg.exists():
        shutil.rmtree(jpeg)
    t0 = time.perf_counter()
    recode_dataset(raw, jpeg, "jpeg", args.quality)
    recode_s = time.perf_counter() - t0
    a, b = EpisodeReader(raw), EpisodeReader(jpeg)
    frames = sum(a.length(e) for e in range(len(a)))
    errors = []
    for e in range(len(a)):
        idx = np.arange(0, a.length(e), 7)
        for cam in a.info.camera_names:
            errors.append(np.abs(a.frames(e, f"image.{cam}", idx).astype(int)
                                 - b.frames(e, f"image.{cam}", idx)).mean())
    image_size = tuple(a.info.image_size)
    copies = {"raw": raw, f"jpeg q{args.quality}": jpeg}
    loads: dict[str, list[float]] = {k: [] for k in copies}
    steps: dict[str, list[float]] = {k: [] for k in copies}
    for r in range(args.repeats):
        for name, path in copies.items():
            loads[name].append(_windows_per_s(path))
            steps[name].append(_steps_per_s(path, work / f"run_{name.split()[0]}_{r}",
                                             args.steps, image_size))
    rows = [(name, _size(path), float(np.median(loads[name])), float(np.median(steps[name])))
            for name, path in copies.items()]
    print(f"dataset {raw}: {len(a)} episodes, {frames} frames, {len(a.info.camera_names)} "
          f"cameras at {image_size[0]}x{image_size[1]}; recode to JPEG took {recode_s:.1f} s; "
          f"JPEG mean abs pixel error {np.mean(errors):.2f} / 255")
    print()
    print("| storage | size | per frame (all cameras) | data path, windows/s (batch 16) | "
          f"training steps/s (tiny, batch 16, {args.steps} steps) |")
    print("|---|---|---|---|---|")
    for name, size, wps, sps in rows:
        print(f"| {name} | {size / 2**20:.1f} MiB | {size / frames / 1024:.1f} kB | "
              f"{wps:.0f} | {sps:.2f} |")
    print(f"\nper repeat: windows/s {loads}, steps/s {steps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
