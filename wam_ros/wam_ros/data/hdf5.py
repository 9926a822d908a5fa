"""ALOHA-style HDF5 episodes -> our dataset: `wam-ros dataset import-hdf5`. ROS-free.

ACT, Mobile ALOHA and the RDT / openpi recipes for AgileX CobotMagic write one HDF5 file per
episode:

    /observations/images/<camera>   (T, H, W, 3) uint8, or JPEG bytes: (T, L) uint8 padded with
                                    zeros (root attribute `compress` true) or variable length
    /observations/qpos              (T, D) joint positions
    /observations/qvel              (T, D) joint velocities (our format has no velocities: not
                                    imported; the positions and their dt carry them)
    /action                         (T, D) commanded joint positions

A key map (keymap.py; shipped for the ACT/ALOHA layout on CobotMagic in
config/dataset_maps/aloha_<robot>.yaml) says which datasets feed state, action and cameras and
maps the D entries onto the robot's action layout, grippers normalised 0..1. The files carry no
time: frame t is at t / fps (the map's fps, else the robot's action rate). JPEG images decode to
the channel order they were encoded from (the arrays the recorder had, RGB in these recipes).

Every file is read and checked before any frame of it is written, and the whole output goes
through a temporary directory: a truncated or malformed file fails with its name and what is
wrong, and leaves no output behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from wam_ros.core.config import ConfigError
from wam_ros.data.dataset import DatasetInfo
from wam_ros.data.keymap import KeyMap, SourceEpisode, resolve_indices, to_layout, write_dataset


def shipped_map(robot: str) -> Path | None:
    from wam_ros.paths import config_dir

    path = config_dir() / "dataset_maps" / f"aloha_{robot}.yaml"
    return path if path.is_file() else None


def find_episodes(paths: list[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix in (".hdf5", ".h5"))
            if not found:
                raise FileNotFoundError(f"{p}: no .hdf5 / .h5 files")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    return out


def _decode_images(path: Path, key: str, ds: Any, compressed: bool) -> np.ndarray:
    """(T, H, W, 3) uint8 from a raw or JPEG-compressed image dataset."""
    import cv2

    data = ds[()]
    if data.dtype == np.uint8 and data.ndim == 4 and data.shape[-1] == 3:
        return data
    if data.dtype == object or (data.dtype == np.uint8 and data.ndim == 2):
        frames = []
        for t, row in enumerate(data):
            buf = np.frombuffer(bytes(row), np.uint8) if data.dtype == object else row
            img = cv2.imdecode(np.ascontiguousarray(buf), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f"{path}: {key} frame {t} is not a decodable image "
                                 f"({len(buf)} bytes)")
            frames.append(img)
        return np.stack(frames)
    raise ValueError(f"{path}: {key} has shape {data.shape} {data.dtype}; expected (T, H, W, 3) "
                     "uint8 or JPEG bytes (T, L) uint8" + (" (root attribute compress is set)"
                                                           if compressed else ""))


def read_episode(path: Path, keymap: KeyMap, layout: tuple[str, ...],
                 cameras: tuple[str, ...], dt: float, task: str) -> SourceEpisode:
    """One HDF5 episode, read and checked in full (errors name the file and the key)."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 file ({exc})") from exc
    try:
        with f:
            def get(key: str) -> Any:
                if key not in f:
                    raise ValueError(f"{path}: no dataset {key!r} (the key map expects it)")
                return f[key]

            compressed = bool(f.attrs.get("compress", False))
            vec = {}
            for key in (keymap.state, keymap.action):
                arr = np.asarray(get(key)[()], np.float64)
                if arr.ndim != 2 or not np.all(np.isfinite(arr)):
                    raise ValueError(f"{path}: {key} must be (T, D) finite numbers, got "
                                     f"{arr.shape}")
                vec[key] = arr
            n = len(vec[keymap.state])
            if len(vec[keymap.action]) != n:
                raise ValueError(f"{path}: {keymap.state} has {n} frames, {keymap.action} "
                                 f"{len(vec[keymap.action])}")
            images = {}
            for cam in cameras:
                key = keymap.cameras[cam]
                images[cam] = _decode_images(path, key, get(key), compressed)
                if len(images[cam]) != n:
                    raise ValueError(f"{path}: {key} has {len(images[cam])} frames, "
                                     f"{keymap.state} {n}")
            file_task = ""
            for attr in ("task", "language_instruction", "instruction"):
                if attr in f.attrs:
                    value = f.attrs[attr]
                    file_task = value.decode() if isinstance(value, bytes) else str(value)
                    break
    except OSError as exc:  # a file cut short fails on the first read past its end
        raise ValueError(f"{path}: unreadable (truncated or damaged: {exc})") from exc
    if n < 1:
        raise ValueError(f"{path}: no frames")
    state = to_layout(vec[keymap.state], resolve_indices(
        layout, keymap, None, vec[keymap.state].shape[1], keymap.state), layout, keymap)
    action = to_layout(vec[keymap.action], resolve_indices(
        layout, keymap, None, vec[keymap.action].shape[1], keymap.action), layout, keymap)

    def frames() -> Iterator[dict[str, np.ndarray]]:
        for t in range(n):
            yield {c: images[c][t] for c in cameras}

    return SourceEpisode(task or keymap.task or file_task, state, action,
                         np.arange(n) * dt, frames, source={"hdf5": str(path)})


def import_hdf5(paths: list[str | Path], out: str | Path, robot: Any,
                keymap_path: str | Path | None = None,
                image_size: tuple[int, int] = (224, 224), resize_mode: str = "center_crop",
                task: str = "", progress: bool = False, log: Any = print) -> dict[str, Any]:
    """ALOHA-style HDF5 episode files -> our dataset at `out` for `robot` (a RobotSpec)."""
    from tqdm import tqdm

    files = find_episodes(paths)
    if keymap_path is None:
        keymap_path = shipped_map(robot.name)
        if keymap_path is None:
            raise ConfigError(f"no shipped HDF5 key map for {robot.name}: pass --map")
    keymap = KeyMap.load(keymap_path)
    cameras = tuple(robot.camera_names)
    missing = [c for c in cameras if c not in keymap.cameras]
    if missing:
        raise ConfigError(f"{keymap_path}: cameras {missing} of {robot.name} are not mapped")
    dt = 1.0 / keymap.fps if keymap.fps else robot.action_dt
    info = DatasetInfo(robot.name, tuple(robot.action_layout), cameras, tuple(image_size), dt)

    def episodes() -> Iterator[SourceEpisode]:
        for path in files:
            yield read_episode(path, keymap, info.action_layout, cameras, dt, task)

    with tqdm(total=len(files), unit="episode", desc="import-hdf5",
              disable=not progress) as bar:
        summary = write_dataset(out, info, episodes(), resize_mode)
        bar.update(len(files))
    log(f"{summary['episodes']} HDF5 episodes, {summary['frames']} frames -> {out} "
        f"({robot.name}, {1 / dt:g} fps, images {image_size[0]}x{image_size[1]})")
    return summary


__all__ = ["find_episodes", "import_hdf5", "read_episode", "shipped_map"]
