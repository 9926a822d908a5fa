"""ALOHA-style HDF5 episodes (ACT / Mobile ALOHA / RDT recipes for CobotMagic) -> our dataset
with the shipped key map: raw and JPEG-compressed images, gripper normalisation, a truncated file
(clear error, nothing written)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from wam_ros.core.robot import RobotSpec
from wam_ros.data.dataset_reader import EpisodeReader
from wam_ros.data.hdf5 import import_hdf5

h5py = pytest.importorskip("h5py")
CAMS = ("cam_high", "cam_left_wrist", "cam_right_wrist")
H, W = 48, 64


def _frames(n: int, seed: int) -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[0:H, 0:W]
    out = {}
    for c, cam in enumerate(CAMS):
        imgs = [np.stack([np.sin(xx / 7 + 0.4 * t + c), np.cos(yy / 6 - 0.3 * t),
                          np.sin((xx + yy) / 11 + seed)], -1) * 90 + 128 for t in range(n)]
        out[cam] = np.stack(imgs).astype(np.uint8)
    return out


def write_aloha(path: Path, n: int, seed: int, compress: bool) -> dict[str, np.ndarray]:
    """One episode as ACT's record_episodes.py / AgileX's collect_data.py write it."""
    rng = np.random.default_rng(seed)
    qpos = rng.uniform(-0.5, 0.5, (n, 14))
    qpos[:, [1, 8]] = rng.uniform(0.2, 2.0, (n, 2))  # joint2 in [0, 3.14]
    qpos[:, [2, 9]] = rng.uniform(-2.0, -0.2, (n, 2))  # joint3 in [-2.967, 0]
    qpos[:, [6, 13]] = rng.uniform(0.0, 0.076, (n, 2))  # jaw opening, m
    action = qpos + 0.01
    images = _frames(n, seed)
    with h5py.File(path, "w") as f:
        f.attrs["sim"] = False
        f.attrs["compress"] = compress
        obs = f.create_group("observations")
        group = obs.create_group("images")
        for cam, frames in images.items():
            if compress:
                encoded = [cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
                           for img in frames]
                pad = max(len(e) for e in encoded)
                data = np.zeros((n, pad), np.uint8)
                for t, e in enumerate(encoded):
                    data[t, : len(e)] = e.reshape(-1)
                group.create_dataset(cam, data=data)
            else:
                group.create_dataset(cam, data=frames, chunks=(1, H, W, 3))
        obs.create_dataset("qpos", data=qpos)
        obs.create_dataset("qvel", data=np.zeros_like(qpos))
        f.create_dataset("action", data=action)
    return {"qpos": qpos, "action": action, **images}


def _normalised(values: np.ndarray) -> np.ndarray:
    out = values.copy()
    out[:, [6, 13]] = np.clip(values[:, [6, 13]] / 0.076, 0, 1)
    return out.astype(np.float32)


def test_raw_and_jpeg_episodes_import_with_the_shipped_map(tmp_path) -> None:
    raw = write_aloha(tmp_path / "episode_0.hdf5", 15, 0, compress=False)
    jpg = write_aloha(tmp_path / "episode_1.hdf5", 11, 1, compress=True)
    out = tmp_path / "ours"
    import_hdf5([tmp_path / "episode_0.hdf5", tmp_path / "episode_1.hdf5"], out,
                RobotSpec.load("cobot_magic"), image_size=(H, W), task="fold the towel",
                log=lambda *_: None)
    r = EpisodeReader(out)
    assert len(r) == 2 and r.info.image_size == (H, W)
    assert r.info.dt == pytest.approx(1 / 30)
    for e, src in enumerate((raw, jpg)):
        ep = r.episode(e)
        assert r.task(e) == "fold the towel"
        assert np.array_equal(ep["state"], _normalised(src["qpos"]))
        assert np.array_equal(ep["action"], _normalised(src["action"]))
        np.testing.assert_allclose(ep["stamp"], np.arange(len(src["qpos"])) / 30)
        assert r.source(e)["hdf5"].endswith(f"episode_{e}.hdf5")
        for cam in CAMS:
            if e == 0:  # raw: exact
                assert np.array_equal(ep[f"image.{cam}"], src[cam])
            else:  # JPEG quality 90
                err = np.abs(ep[f"image.{cam}"].astype(int) - src[cam]).mean()
                assert err < 4.0, (cam, err)


def test_truncated_file_fails_clearly_and_writes_nothing(tmp_path) -> None:
    write_aloha(tmp_path / "episode_0.hdf5", 10, 0, compress=False)
    write_aloha(tmp_path / "episode_1.hdf5", 10, 1, compress=False)
    data = (tmp_path / "episode_1.hdf5").read_bytes()
    (tmp_path / "episode_1.hdf5").write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "ours"
    with pytest.raises(ValueError, match="episode_1.hdf5"):
        import_hdf5([tmp_path], out, RobotSpec.load("cobot_magic"), image_size=(H, W),
                    log=lambda *_: None)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    res = subprocess.run([sys.executable, "-m", "wam_ros.cli", "dataset", "import-hdf5",
                          str(tmp_path / "episode_0.hdf5"), str(tmp_path / "episode_1.hdf5"),
                          "--out", str(out), "--robot", "cobot_magic", "--quiet"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1 and "episode_1.hdf5" in res.stderr and "Traceback" not in \
        res.stderr, res.stderr
    assert not out.exists()


def test_missing_key_names_the_key(tmp_path) -> None:
    write_aloha(tmp_path / "episode_0.hdf5", 5, 0, compress=False)
    with h5py.File(tmp_path / "episode_0.hdf5", "a") as f:
        del f["action"]
    with pytest.raises(ValueError, match="no dataset '/action'"):
        import_hdf5([tmp_path / "episode_0.hdf5"], tmp_path / "ours",
                    RobotSpec.load("cobot_magic"), log=lambda *_: None)
    assert not (tmp_path / "ours").exists()
