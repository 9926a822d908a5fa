"""Episode dataset: writer/reader round trip, crash safety, training windows, bad input."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from wam_ros.core.robot import RobotSpec
from wam_ros.data.dataset import DatasetInfo
from wam_ros.data.dataset_reader import ConcatReader, EpisodeReader, PartRows, open_dataset
from wam_ros.data.dataset_writer import DatasetWriter
from wam_ros.data.synthetic_dataset import make_synthetic_dataset
from wam_ros.data.windows import WindowDataset, rest_tail_start, split_episodes


def _info() -> DatasetInfo:
    return DatasetInfo("cobot_magic", tuple(f"j{i}" for i in range(3)), ("a", "b"), (8, 6),
                       0.1)


def _frame(t: int) -> tuple[dict, np.ndarray, np.ndarray]:
    images = {c: np.full((8, 6, 3), (t * 7 + k) % 256, np.uint8) for k, c in enumerate("ab")}
    return images, np.array([t, t + 0.5, -t], np.float32), np.array([t + 1, 0, 1], np.float32)


def test_round_trip_across_parts(tmp_path) -> None:
    writer = DatasetWriter(tmp_path, _info(), part_frames=4)
    with writer.new_episode("stack cups") as ep:
        for t in range(10):
            ep.add(t * 0.1, *_frame(t))
    reader = EpisodeReader(tmp_path)
    assert len(reader) == 1 and reader.length(0) == 10 and reader.task(0) == "stack cups"
    data = reader.episode(0)
    assert data["image.a"].shape == (10, 8, 6, 3) and data["image.a"].dtype == np.uint8
    for t in range(10):
        images, state, action = _frame(t)
        assert np.array_equal(data["image.b"][t], images["b"])
        assert np.array_equal(data["state"][t], state)
        assert np.array_equal(data["action"][t], action)
    assert np.allclose(data["stamp"], np.arange(10) * 0.1)
    index = json.loads((tmp_path / "index.json").read_text())
    assert [n for _, n in index["episodes"][0]["parts"]] == [4, 4, 2]
    assert index["episodes"][0]["complete"] is True


def test_killed_writer_leaves_flushed_parts_readable(tmp_path) -> None:
    writer = DatasetWriter(tmp_path, _info(), part_frames=4)
    ep = writer.new_episode("pour")
    for t in range(9):  # never closed: 8 frames flushed in two parts, 1 lost in the buffer
        ep.add(t * 0.1, *_frame(t))
    reader = EpisodeReader(tmp_path)
    assert reader.length(0) == 8
    assert np.array_equal(reader.episode(0)["state"][7], _frame(7)[1])
    assert not json.loads((tmp_path / "index.json").read_text())["episodes"][0]["complete"]
    # appending later continues the dataset
    with DatasetWriter(tmp_path, _info()).new_episode("pour") as ep2:
        ep2.add(0.0, *_frame(0))
    assert len(EpisodeReader(tmp_path)) == 2


def test_writer_rejects_bad_frames_and_mismatched_dataset(tmp_path) -> None:
    writer = DatasetWriter(tmp_path, _info())
    ep = writer.new_episode("x")
    images, state, action = _frame(0)
    with pytest.raises(ValueError, match="camera 'a'"):
        ep.add(0.0, {"a": np.zeros((8, 6), np.uint8), "b": images["b"]}, state, action)
    with pytest.raises(ValueError, match="state"):
        ep.add(0.0, images, np.array([np.nan, 0, 0]), action)
    other = DatasetInfo("agibot_g1", _info().action_layout, ("a", "b"), (8, 6), 0.1)
    with pytest.raises(ValueError, match="cannot append"):
        DatasetWriter(tmp_path, other)


def test_object_poses_round_trip_and_are_checked(tmp_path) -> None:
    columns = ("cube.x", "cube.y", "cube.z", "cube.yaw")
    info = dataclasses.replace(_info(), objects=columns)
    writer = DatasetWriter(tmp_path, info, part_frames=4)
    with writer.new_episode("x") as ep:
        with pytest.raises(ValueError, match="objects"):
            ep.add(0.0, *_frame(0))  # declared, so every frame must carry them
        with pytest.raises(ValueError, match="objects"):
            ep.add(0.0, *_frame(0), np.array([0, 0, np.nan, 0]))
        for t in range(10):
            ep.add(t * 0.1, *_frame(t), np.array([t, -t, 0.5, 0.1]))
    reader = EpisodeReader(tmp_path)
    assert reader.info.objects == columns
    np.testing.assert_allclose(reader.episode(0)["objects"][:, 0], np.arange(10))
    windows = WindowDataset(reader, [0], horizon=3, chunks=2, objects=True)
    item = windows[0]
    # the poses at each chunk's first frame (the observations the chunks are planned from)
    starts = item["state"][:, 0]
    np.testing.assert_allclose(item["objects"][:, 0], starts)
    with pytest.raises(ValueError, match="cannot append"):
        DatasetWriter(tmp_path, _info())  # the same dataset without object poses
    plain = tmp_path / "plain"
    with DatasetWriter(plain, _info()).new_episode("x") as ep:
        ep.add(0.0, *_frame(0))
    with pytest.raises(ValueError, match="no object poses"):
        WindowDataset(EpisodeReader(plain), [0], horizon=1, chunks=1, objects=True)


def test_window_dataset_samples(tmp_path) -> None:
    spec = RobotSpec.load("cobot_magic")
    make_synthetic_dataset(tmp_path, spec, n_episodes=4, length=20, image_size=(16, 16))
    reader = EpisodeReader(tmp_path)
    assert reader.info.camera_names == spec.camera_names
    data = WindowDataset(reader, [0, 1, 2, 3], horizon=8, chunks=3, samples_per_epoch=10)
    item = data[3]
    assert item["images"].shape == (4, 3, 3, 16, 16) and item["images"].dtype == np.uint8
    assert item["state"].shape == (3, 14) and item["actions"].shape == (3, 8, 14)
    assert item["task"].startswith("reach goal")
    assert np.array_equal(data[3]["actions"], item["actions"])  # deterministic per index
    full = reader.episode(0)
    assert np.all(full["action"][:, spec.gripper_mask()] >= 0)
    assert np.all(full["action"][:, spec.gripper_mask()] <= 1)
    train, val = split_episodes(10, 0.2)
    assert len(val) == 2 and sorted(train + val) == list(range(10))


def test_windows_past_the_end_hold_the_last_frame(tmp_path) -> None:
    writer = DatasetWriter(tmp_path, _info())
    with writer.new_episode("x") as ep:
        for t in range(10):
            ep.add(t * 0.1, *_frame(t))
    data = WindowDataset(EpisodeReader(tmp_path), [0], horizon=4, chunks=3, samples_per_epoch=5)
    for i in range(5):
        item = data[i]
        assert np.array_equal(item["actions"][-1, -1], _frame(9)[2])  # frame 9 held
        t0 = int(item["state"][0][0])
        assert np.array_equal(item["state"][1], _frame(min(t0 + 4, 9))[1])
        assert np.array_equal(item["images"][3, 0, 0], np.full((8, 6), (min(t0 + 12, 9) * 7)
                                                               % 256))


def test_rest_tail_is_not_trained_on(tmp_path) -> None:
    """An episode that moves for 6 frames and then rests: with a rest tolerance its windows
    end at the last moving frame, so no sample shows the arm at rest told to stay."""
    state = np.array([[0.0], [1.0], [2.0], [3.0], [3.98], [3.995], [4.0], [4.0], [4.0]])
    assert rest_tail_start(state, 0.05) == 4 and rest_tail_start(state, 0.001) == 6
    assert rest_tail_start(np.zeros((5, 2)), 0.05) == 0  # never moved
    writer = DatasetWriter(tmp_path, _info())
    with writer.new_episode("x") as ep:
        for t in range(12):
            images, state, action = _frame(min(t, 6))  # frames 6.. repeat: at rest
            ep.add(t * 0.1, images, state, action)
    reader = EpisodeReader(tmp_path)
    full = WindowDataset(reader, [0], horizon=2, chunks=2, samples_per_epoch=40)
    trimmed = WindowDataset(reader, [0], horizon=2, chunks=2, samples_per_epoch=40,
                            rest_tolerance=0.05)
    assert full.lengths[0] == 12 and trimmed.lengths[0] == 6
    assert max(float(trimmed[i]["state"][:, 0].max()) for i in range(40)) <= 5.0
    assert max(float(full[i]["state"][:, 0].max()) for i in range(40)) == 6.0


def test_part_rows_read_exactly_what_safetensors_holds(tmp_path) -> None:
    """The positioned-read row reader against safetensors' own, for every dtype the datasets
    use, runs and single rows; bad requests and damaged files are clear errors."""
    from safetensors.numpy import load_file, save_file

    rng = np.random.default_rng(0)
    tensors = {"image": rng.integers(0, 256, (7, 4, 5, 3)).astype(np.uint8),
               "state": rng.normal(size=(7, 3)).astype(np.float32),
               "stamp": rng.normal(size=7), "ids": np.arange(7, dtype=np.int64)}
    path = tmp_path / "part.safetensors"
    save_file(tensors, str(path), metadata={"note": "x"})
    ref = load_file(str(path))
    rows = PartRows(path)
    for key, value in ref.items():
        for start, count in ((0, 7), (2, 3), (6, 1)):
            got = rows.rows(key, start, count)
            assert got.dtype == value.dtype
            np.testing.assert_array_equal(got, value[start:start + count])
    with pytest.raises(KeyError, match="nope"):
        rows.rows("nope", 0, 1)
    for start, count in ((-1, 1), (6, 2), (0, 0)):
        with pytest.raises(IndexError):
            rows.rows("state", start, count)
    rows.close()
    rows.close()  # idempotent
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match="truncated"):
        PartRows(cut)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x05\x00")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        PartRows(junk)


def test_reader_reads_unsorted_rows_across_parts_and_bounds_open_files(tmp_path, monkeypatch
                                                                       ) -> None:
    from wam_ros.data import dataset_reader

    writer = DatasetWriter(tmp_path / "ds", _info(), part_frames=4)
    for e in range(3):
        with writer.new_episode("t") as ep:
            for t in range(10):
                ep.add(t * 0.1, *_frame(t + 100 * e))
    monkeypatch.setattr(dataset_reader, "MAX_OPEN_PARTS", 2)
    reader = EpisodeReader(tmp_path / "ds")
    idx = np.array([9, 0, 1, 2, 3, 4, 8, 8, 5])  # crosses parts, repeats, goes back
    for e in range(3):
        state = reader.frames(e, "state", idx)
        np.testing.assert_array_equal(state[:, 0], idx + 100 * e)
        assert len(reader._handles) <= 2
    reader.close()
    assert not reader._handles


def test_several_datasets_read_as_one(tmp_path) -> None:
    cobot = RobotSpec.load("cobot_magic")
    a = make_synthetic_dataset(tmp_path / "a", cobot, n_episodes=2, length=12, objects=True)
    b = make_synthetic_dataset(tmp_path / "b", cobot, n_episodes=3, length=10, seed=1)
    assert isinstance(open_dataset(a), EpisodeReader)
    assert isinstance(open_dataset([a]), EpisodeReader)
    both = open_dataset([a, b])
    assert isinstance(both, ConcatReader) and len(both) == 5
    assert [both.length(e) for e in range(5)] == [12, 12, 10, 10, 10]
    alone = EpisodeReader(b)
    np.testing.assert_array_equal(both.frames(3, "state", np.arange(10)),
                                  alone.frames(1, "state", np.arange(10)))
    assert both.task(4) == alone.task(2)
    assert both.info.objects == ()  # only a records object poses
    windows = WindowDataset(both, list(range(5)), horizon=4, chunks=2)
    assert windows[0]["images"].shape[0] == 3
    with pytest.raises(ValueError, match="records no object poses"):
        WindowDataset(both, [0], horizon=4, chunks=2, objects=True)
    g1 = make_synthetic_dataset(tmp_path / "g1", RobotSpec.load("agibot_g1"), n_episodes=2,
                                length=10)
    with pytest.raises(ValueError, match="differ"):
        open_dataset([a, g1])
    both.close()
