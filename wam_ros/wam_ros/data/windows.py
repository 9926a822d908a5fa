"""Training windows from an episode dataset: WindowDataset (the torch-style Dataset the trainer
samples), the rest tail an episode may be cut before, and the train / validation split by
episode.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wam_ros.data.dataset_reader import EpisodeReader


class WindowDataset:
    """torch-style Dataset of training windows: `chunks` consecutive chunks of `horizon`.

    Sample i (deterministic from i): an episode and a start frame t0; frames t_c = t0 + c*H for
    c = 0..chunks (the last one is the future target of the last chunk), indices past the end
    clamp to the last frame (the robot holds still). rest_tolerance > 0 ends each episode
    before its rest tail (`rest_tail_start`). Returns a dict of numpy arrays:
      images (chunks+1, ncam, 3, H, W) uint8, state (chunks, D), actions (chunks, H, D)
      absolute, task (str); with `objects`, also objects (chunks, K) at each chunk start
      (the dataset must record them).
    """

    def __init__(self, reader: EpisodeReader, episodes: list[int], horizon: int, chunks: int,
                 samples_per_epoch: int | None = None, seed: int = 0,
                 rest_tolerance: float = 0.0, objects: bool = False) -> None:
        if not episodes:
            raise ValueError("no episodes for this split")
        if objects and not reader.info.objects:
            raise ValueError(f"{reader.root}: the dataset records no object poses")
        self.objects = objects
        self.reader, self.episodes = reader, list(episodes)
        self.horizon, self.chunks = horizon, chunks
        self.lengths = {e: reader.length(e) for e in self.episodes}
        if rest_tolerance > 0:
            for e in self.episodes:
                state = reader.frames(e, "state", np.arange(self.lengths[e]))
                self.lengths[e] = max(rest_tail_start(state, rest_tolerance), 2)
        lengths = np.array([self.lengths[e] for e in self.episodes])
        self.weights = lengths / lengths.sum()
        self.n = samples_per_epoch or int(lengths.sum())
        self.seed = seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        rng = np.random.default_rng((self.seed, i))
        ep = self.episodes[int(rng.choice(len(self.episodes), p=self.weights))]
        n = self.lengths[ep]
        t0 = int(rng.integers(0, max(1, n - self.horizon)))
        frame_idx = np.minimum(t0 + self.horizon * np.arange(self.chunks + 1), n - 1)
        act_idx = np.minimum(t0 + np.arange(self.chunks * self.horizon), n - 1)
        cams = self.reader.info.camera_names
        images = np.stack([self.reader.frames(ep, f"image.{c}", frame_idx) for c in cams], 1)
        item = {
            "images": images.transpose(0, 1, 4, 2, 3),  # (C+1, ncam, 3, H, W)
            "state": self.reader.frames(ep, "state", frame_idx[:-1]).astype(np.float32),
            "actions": self.reader.frames(ep, "action", act_idx).astype(np.float32).reshape(
                self.chunks, self.horizon, -1),
            "task": self.reader.task(ep),
        }
        if self.objects:
            item["objects"] = self.reader.frames(ep, "objects", frame_idx[:-1]).astype(
                np.float32)
        return item


def rest_tail_start(state: np.ndarray, tolerance: float) -> int:
    """Index of the first frame from which the state stays within `tolerance` (max abs over
    the dimensions) of the final state: where the episode's rest tail starts."""
    far = np.abs(np.asarray(state) - np.asarray(state)[-1]).max(axis=1) > tolerance
    moving = np.flatnonzero(far)
    return int(moving[-1]) + 1 if moving.size else 0


def split_episodes(n: int, val_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Deterministic train/validation split by episode (at least one of each when n >= 2)."""
    order = np.random.default_rng(seed).permutation(n).tolist()
    n_val = min(max(1, round(n * val_fraction)), n - 1) if n >= 2 else 0
    return sorted(order[n_val:]), sorted(order[:n_val])


__all__ = ["WindowDataset", "rest_tail_start", "split_episodes"]
