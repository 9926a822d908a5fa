"""Compressed image storage (image_format jpeg): random access to single frames, everything
but the images exact, images within JPEG quality 95's error, appending checks the format, and
training reads it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wam_ros.core.robot import RobotSpec
from wam_ros.data.dataset import DatasetInfo
from wam_ros.data.dataset_reader import EpisodeReader
from wam_ros.data.dataset_writer import DatasetWriter, recode_dataset
from wam_ros.data.synthetic_dataset import make_synthetic_dataset


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("jpeg")
    raw = make_synthetic_dataset(root / "raw", RobotSpec.load("cobot_magic"), n_episodes=3,
                                 length=40, image_size=(32, 32))
    jpeg = recode_dataset(raw, root / "jpeg", "jpeg")
    return raw, jpeg


def test_jpeg_dataset_matches_the_raw_one(pair) -> None:
    raw, jpeg = pair
    a, b = EpisodeReader(raw), EpisodeReader(jpeg)
    assert json.loads((jpeg / "index.json").read_text())["image_format"] == "jpeg"
    assert b.info.image_format == "jpeg" and a.info.image_format == "raw"
    for e in range(len(a)):
        x, y = a.episode(e), b.episode(e)
        for key in ("state", "action", "stamp"):
            assert np.array_equal(x[key], y[key])
        for cam in a.info.camera_names:
            err = np.abs(x[f"image.{cam}"].astype(int) - y[f"image.{cam}"])
            assert err.mean() < 2.0 and y[f"image.{cam}"].shape == (40, 32, 32, 3)
    # random access: single frames and runs across parts, in any order
    idx = np.array([39, 0, 17, 18, 19, 5])
    cam = "image.cam_high"
    assert np.array_equal(b.frames(1, cam, idx), b.episode(1)[cam][idx])


def test_appending_another_image_format_is_refused(pair) -> None:
    _, jpeg = pair
    info = EpisodeReader(jpeg).info
    with pytest.raises(ValueError, match="stores images as jpeg"):
        DatasetWriter(jpeg, DatasetInfo(info.robot, info.action_layout, info.camera_names,
                                        info.image_size, info.dt))
    with pytest.raises(ValueError, match="image_format: got 'png'"):
        DatasetInfo(info.robot, info.action_layout, info.camera_names, info.image_size,
                    info.dt, image_format="png")


def test_smaller_on_disk_and_trainable(pair, tmp_path) -> None:
    from wam_ros.model.config import load_config
    from wam_ros.model.train import train

    raw, jpeg = pair
    size = {p: sum(f.stat().st_size for f in p.rglob("*.safetensors")) for p in pair}
    assert size[jpeg] < size[raw]
    mcfg, tcfg = load_config("tiny")
    tcfg.steps, tcfg.batch_size, tcfg.val_every, tcfg.val_batches = 2, 2, 2, 1
    tcfg.stats_samples = 8
    result = train(jpeg, (mcfg, tcfg), tmp_path / "ckpt", progress=False, log=lambda *_: None)
    assert np.isfinite(result["history"][-1]["action_kv"])


def test_dataset_build_stores_jpeg(tmp_path) -> None:
    from wam_ros.data.convert import BuildOptions, build_dataset
    from wam_ros.data.synthetic import write_synthetic_episode

    bag = write_synthetic_episode(tmp_path / "bag", "cobot_magic", 1.0, image_size=(48, 64))
    (raw,) = build_dataset([bag], tmp_path / "raw", BuildOptions(image_size=(32, 32)),
                           progress=False, log=lambda *_: None)
    (jpg,) = build_dataset([bag], tmp_path / "jpeg",
                           BuildOptions(image_size=(32, 32), image_format="jpeg"),
                           progress=False, log=lambda *_: None)
    a, b = EpisodeReader(tmp_path / "raw"), EpisodeReader(tmp_path / "jpeg")
    assert b.info.image_format == "jpeg" and raw.frames == jpg.frames > 20
    x, y = a.episode(0), b.episode(0)
    assert np.array_equal(x["state"], y["state"]) and np.array_equal(x["action"], y["action"])
    assert np.abs(x["image.cam_high"].astype(int) - y["image.cam_high"]).mean() < 3.0
    with pytest.raises(ValueError, match="image_format: got 'webp'"):
        BuildOptions(image_format="webp")
