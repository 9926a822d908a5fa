"""LeRobotDataset interop: `export-lerobot` read back by LeRobot's own reader (the PyPI package
`lerobot-dataset`, in a side environment: tools/lerobot_venv.sh), `import-lerobot` of v3.0 and
v2.1 directories with and without a key map, the round trip ours -> LeRobot -> ours, and
training on an imported dataset.

Codec tolerance (AV1, LeRobot's settings: crf 30, a key frame every 2 frames, yuv420p) on the
synthetic 32x32 images: mean absolute error <= 3 of 255 per episode and camera, 99th
percentile <= 30 (measured 1.6-2.3 / 22-26 here, 1.2 / 13 at 64x64); everything else is exact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from wam_ros.core.config import ConfigError
from wam_ros.core.robot import RobotSpec
from wam_ros.data.dataset_reader import EpisodeReader
from wam_ros.data.lerobot import ExportOptions, export_lerobot, import_lerobot
from wam_ros.data.synthetic_dataset import make_synthetic_dataset
from wam_ros.data.video import VideoWriter

ROOT = Path(__file__).resolve().parents[3]
MAE_MAX, P99_MAX = 3.0, 30.0


def image_error(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    err = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return float(err.mean()), float(np.percentile(err, 99))


@pytest.fixture(scope="module")
def ours(tmp_path_factory) -> Path:
    """Three episodes of 21 frames and two of 13 (two writers appending), object poses, a
    success mark and an episode cut short."""
    spec = RobotSpec.load("cobot_magic")
    root = tmp_path_factory.mktemp("lr") / "ours"
    make_synthetic_dataset(root, spec, n_episodes=3, length=21, image_size=(32, 32),
                           objects=True, seed=1)
    make_synthetic_dataset(root, spec, n_episodes=2, length=13, image_size=(32, 32),
                           objects=True, seed=2)
    index = json.loads((root / "index.json").read_text())
    index["episodes"][1]["success"] = True
    index["episodes"][3]["complete"] = False
    index["episodes"][4]["source"] = {"bag": "episodes/x"}
    (root / "index.json").write_text(json.dumps(index))
    return root


@pytest.fixture(scope="module")
def exported(ours: Path) -> Path:
    out = ours.parent / "lerobot"
    export_lerobot(ours, out, log=lambda *_: None)
    return out


def test_export_layout_is_lerobot_v3(exported: Path, ours: Path) -> None:
    info = json.loads((exported / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["robot_type"] == "cobot_magic"
    assert info["fps"] == 30 and info["total_episodes"] == 5 and info["total_frames"] == 89
    assert info["total_tasks"] == 3
    spec = RobotSpec.load("cobot_magic")
    assert info["features"]["observation.state"]["names"] == list(spec.action_layout)
    assert info["features"]["action"]["shape"] == [14]
    cams = [k for k, f in info["features"].items() if f["dtype"] == "video"]
    assert cams == [f"observation.images.{c}" for c in spec.camera_names]
    for cam in cams:  # one mp4 per camera
        assert len(list((exported / "videos" / cam).rglob("*.mp4"))) == 1
    stats = json.loads((exported / "meta" / "stats.json").read_text())
    assert stats["observation.state"]["count"] == [89]
    assert np.array(stats["observation.images.cam_high"]["mean"]).shape == (3, 1, 1)


def test_export_refuses_an_existing_destination(ours: Path, exported: Path) -> None:
    before = sorted(p.name for p in exported.rglob("*"))
    with pytest.raises(FileExistsError, match="exists already"):
        export_lerobot(ours, exported, log=lambda *_: None)
    assert sorted(p.name for p in exported.rglob("*")) == before


def _lerobot_python() -> str:
    """The side environment's interpreter (created once, ~2 min; a no-op afterwards)."""
    out = subprocess.run(["bash", str(ROOT / "tools" / "lerobot_venv.sh")], check=True,
                         capture_output=True, text=True, timeout=1200)
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_lerobots_own_reader_yields_our_data(exported: Path, ours: Path, tmp_path) -> None:
    python = _lerobot_python()
    dump = tmp_path / "dump"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf")}
    subprocess.run([python, str(Path(__file__).parents[1] / "lerobot_reader_dump.py"),
                    str(exported), str(dump)], check=True, env=env, timeout=600)
    meta = json.loads(dump.with_suffix(".json").read_text())
    got = np.load(dump.with_suffix(".npz"), allow_pickle=False)
    reader = EpisodeReader(ours)
    assert meta["codebase_version"] == "v3.0" and meta["robot_type"] == "cobot_magic"
    assert meta["fps"] == 30 and meta["num_episodes"] == len(reader) == 5
    lengths = [reader.length(e) for e in range(len(reader))]
    starts = np.cumsum([0, *lengths])
    assert [(e["from"], e["to"]) for e in meta["episodes"]] == list(
        zip(starts[:-1].tolist(), starts[1:].tolist()))
    assert [e["tasks"] for e in meta["episodes"]] == [[reader.task(e)] for e in range(5)]
    assert meta["frame_tasks"] == [reader.task(e) for e in range(5) for _ in range(lengths[e])]
    assert set(meta["stats_keys"]) >= {"observation.state", "action",
                                       "observation.images.cam_high"}
    for e in range(len(reader)):
        rows = slice(starts[e], starts[e + 1])
        ep = reader.episode(e)
        assert np.array_equal(got["observation.state"][rows], ep["state"])
        assert np.array_equal(got["action"][rows], ep["action"])
        assert np.array_equal(got["observation.environment_state"][rows], ep["objects"])
        assert np.array_equal(got["episode_index"][rows], np.full(lengths[e], e))
        assert np.array_equal(got["frame_index"][rows], np.arange(lengths[e]))
        np.testing.assert_allclose(got["timestamp"][rows], np.arange(lengths[e]) / 30,
                                   atol=1e-6)
        for cam in reader.info.camera_names:
            mae, p99 = image_error(got[f"observation.images.{cam}"][rows], ep[f"image.{cam}"])
            assert mae <= MAE_MAX and p99 <= P99_MAX, (e, cam, mae, p99)


def test_round_trip_ours_lerobot_ours_keeps_everything(exported: Path, ours: Path,
                                                       tmp_path) -> None:
    back = tmp_path / "back"
    import_lerobot(exported, back, RobotSpec.load("cobot_magic"), log=lambda *_: None)
    a, b = EpisodeReader(ours), EpisodeReader(back)
    assert a.info == b.info
    assert len(a) == len(b)
    for e in range(len(a)):
        ea, eb = a.episodes[e], b.episodes[e]
        for key in ("name", "task", "length", "complete", "success"):
            assert ea[key] == eb[key], key
        assert ea.get("source", {}) == eb.get("source", {})
        x, y = a.episode(e), b.episode(e)
        for key in ("state", "action", "stamp", "objects"):
            assert np.array_equal(x[key], y[key]), key
        for cam in a.info.camera_names:
            mae, p99 = image_error(x[f"image.{cam}"], y[f"image.{cam}"])
            assert mae <= MAE_MAX and p99 <= P99_MAX, (e, cam, mae, p99)


def _write_v21(root: Path, episodes: list[dict], fps: int, names: list[str],
               cams: dict[str, str], size: tuple[int, int], images: bool = False) -> None:
    """A LeRobot v2.1 directory as LeRobot 0.3 wrote them: per-episode parquet and mp4 (or,
    `images`, PNG images inside the parquet), meta/episodes.jsonl and tasks.jsonl."""
    import cv2
    import pyarrow as pa
    import pyarrow.parquet as pq

    h, w = size
    tasks = sorted({e["task"] for e in episodes})
    feats = {key: {"dtype": "image" if images else "video", "shape": [h, w, 3],
                   "names": ["height", "width", "channel"]} for key in cams.values()}
    feats["observation.state"] = {"dtype": "float32", "shape": [len(names)],
                                  "names": {"motors": names}}
    feats["action"] = {"dtype": "float32", "shape": [len(names)], "names": {"motors": names}}
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        feats[key] = {"dtype": "float32" if key == "timestamp" else "int64", "shape": [1],
                      "names": None}
    info = {"codebase_version": "v2.1", "robot_type": "aloha", "fps": fps, "chunks_size": 1000,
            "total_episodes": len(episodes),
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/"
                          "episode_{episode_index:06d}.mp4", "features": feats}
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    (root / "meta" / "tasks.jsonl").write_text(
        "".join(json.dumps({"task_index": i, "task": t}) + "\n" for i, t in enumerate(tasks)))
    lines, index = [], 0
    for e, ep in enumerate(episodes):
        n = len(ep["state"])
        lines.append(json.dumps({"episode_index": e, "tasks": [ep["task"]], "length": n}))
        table = pa.table({
            "observation.state": pa.FixedSizeListArray.from_arrays(
                pa.array(ep["state"].reshape(-1)), len(names)),
            "action": pa.FixedSizeListArray.from_arrays(pa.array(ep["action"].reshape(-1)),
                                                        len(names)),
            "timestamp": pa.array(np.arange(n, dtype=np.float32) / fps),
            "frame_index": pa.array(np.arange(n)), "episode_index": pa.array(np.full(n, e)),
            "index": pa.array(index + np.arange(n)),
            "task_index": pa.array(np.full(n, tasks.index(ep["task"])))})
        if images:  # as datasets' Image feature stores them: {bytes, path}
            for cam, key in cams.items():
                cells = [{"bytes": cv2.imencode(".png", img[:, :, ::-1])[1].tobytes(),
                          "path": None} for img in ep["images"][cam]]
                table = table.append_column(key, pa.array(cells, pa.struct(
                    [("bytes", pa.binary()), ("path", pa.string())])))
        path = root / f"data/chunk-000/episode_{e:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        for cam, key in (() if images else cams.items()):
            with VideoWriter(root / f"videos/chunk-000/{key}/episode_{e:06d}.mp4", fps, w, h,
                             codec="libx264", crf=18, gop=2) as v:
                for img in ep["images"][cam]:
                    v.add(img)
        index += n
    (root / "meta" / "episodes.jsonl").write_text("\n".join(lines) + "\n")


def _foreign_episodes(n_eps: int = 2, n: int = 12, size=(32, 32)) -> list[dict]:
    """Episodes in another convention: 7-value arms (gripper as jaw opening in m, 0..0.08)."""
    rng = np.random.default_rng(3)
    out = []
    yy, xx = np.mgrid[0:size[0], 0:size[1]]

    def smooth(phase: float) -> np.ndarray:  # what a camera sees, not noise
        img = np.stack([np.sin(xx / 6 + phase), np.cos(yy / 5 - phase),
                        np.sin((xx + yy) / 9)], -1)
        return (img * 90 + 128).astype(np.uint8)

    for e in range(n_eps):
        state = rng.uniform(-0.5, 0.5, (n, 14)).astype(np.float32)
        state[:, [6, 13]] = rng.uniform(0.0, 0.08, (n, 2))
        action = state + np.float32(0.01)
        images = {c: [smooth(0.5 * t + 0.1 * e) for t in range(n)]
                  for c in ("top", "left", "right")}
        out.append({"task": f"task {e}", "state": state, "action": action, "images": images})
    return out


def test_import_lerobot_v21_with_a_key_map(tmp_path) -> None:
    spec = RobotSpec.load("cobot_magic")
    names = [f"{side}_{j}" for side in ("left", "right")
             for j in ("waist", "shoulder", "elbow", "forearm", "wrist", "rotate", "gripper")]
    eps = _foreign_episodes()
    src = tmp_path / "v21"
    _write_v21(src, eps, 30, names, {"top": "observation.images.top",
                                     "left": "observation.images.left_wrist",
                                     "right": "observation.images.right_wrist"}, (32, 32))
    out = tmp_path / "ours"
    with pytest.raises(ConfigError, match="cameras .* have no source"):
        import_lerobot(src, out, spec, log=lambda *_: None)
    assert not out.exists()
    keymap = tmp_path / "map.yaml"
    keymap.write_text(
        "cameras: {cam_high: observation.images.top, cam_left_wrist: "
        "observation.images.left_wrist, cam_right_wrist: observation.images.right_wrist}\n"
        "joints: {" + ", ".join(f"{ours}: {theirs}" for ours, theirs in zip(
            spec.action_layout, names)) + "}\n"
        "grippers: {left_joint7: {closed: 0.0, open: 0.08}, "
        "right_joint7: {closed: 0.0, open: 0.08}}\n")
    import_lerobot(src, out, spec, keymap, log=lambda *_: None)
    r = EpisodeReader(out)
    assert len(r) == 2 and r.info.image_size == (32, 32) and r.info.dt == pytest.approx(1 / 30)
    for e, ep in enumerate(eps):
        got = r.episode(e)
        assert r.task(e) == f"task {e}"
        want = ep["state"].copy()
        want[:, [6, 13]] = ep["state"][:, [6, 13]] / 0.08
        np.testing.assert_allclose(got["state"], want, rtol=1e-6, atol=1e-7)
        assert np.array_equal(got["state"][:, :6], ep["state"][:, :6])
        np.testing.assert_allclose(got["stamp"], np.arange(12) / 30, atol=1e-6)
        # each stored frame is its own source frame (not a neighbour): nearest by error
        src_frames = np.stack(ep["images"]["top"]).astype(np.int16)
        for t, img in enumerate(got["image.cam_high"]):
            errors = np.abs(src_frames - img.astype(np.int16)).mean(axis=(1, 2, 3))
            assert int(np.argmin(errors)) == t and errors[t] <= 8.0, (t, errors)


def test_key_map_errors_name_the_key(tmp_path, exported: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("grippers: {left_joint7: {closed: 0.0}}\n")
    with pytest.raises(ConfigError, match="grippers.left_joint7"):
        import_lerobot(exported, tmp_path / "x", RobotSpec.load("cobot_magic"), bad)
    bad.write_text("joints: {left_joint1: 99}\n")
    with pytest.raises(ConfigError, match="does not map"):
        import_lerobot(exported, tmp_path / "x", RobotSpec.load("cobot_magic"), bad)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_train_runs_on_an_imported_dataset(exported: Path, tmp_path) -> None:
    from wam_ros.model.config import load_config
    from wam_ros.model.train import train

    data = tmp_path / "imported"
    import_lerobot(exported, data, RobotSpec.load("cobot_magic"), log=lambda *_: None)
    mcfg, tcfg = load_config("tiny")
    tcfg.steps, tcfg.batch_size, tcfg.val_every, tcfg.val_batches = 4, 2, 2, 1
    tcfg.stats_samples = 8
    result = train(data, (mcfg, tcfg), tmp_path / "ckpt", progress=False, log=lambda *_: None)
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()
    assert [h["step"] for h in result["history"]] == [0, 2, 4]
    assert all(np.isfinite(v) for h in result["history"] for v in h.values())
    # the run's curves: history.csv (one row per validation) and curves.png
    import csv

    with open(tmp_path / "ckpt" / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [0, 2, 4]
    for key in ("lr", "train_latent", "train_action", "val_latent_kv", "val_action_ttt"):
        assert key in rows[0]
    assert rows[0]["train_latent"] == "" and float(rows[2]["train_action"]) > 0
    assert float(rows[2]["val_action_kv"]) == pytest.approx(result["history"][2]["action_kv"],
                                                            rel=1e-4)
    assert (tmp_path / "ckpt" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_export_and_import(ours: Path, tmp_path) -> None:
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    cli = [sys.executable, "-m", "wam_ros.cli", "dataset"]
    lr = tmp_path / "lr"
    out = subprocess.run([*cli, "export-lerobot", str(ours), "--out", str(lr), "--quiet",
                                "--codec", "libx264"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads((lr / "meta" / "info.json").read_text())["features"][
        "observation.images.cam_high"]["info"]["video.codec"] == "h264"
    back = tmp_path / "back"
    out = subprocess.run([*cli, "import-lerobot", str(lr), "--out", str(back), "--robot",
                                "cobot_magic", "--quiet"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert len(EpisodeReader(back)) == 5
    out = subprocess.run([*cli, "import-lerobot", str(lr), "--out", str(back), "--robot",
                                "cobot_magic"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 1 and "exists already" in out.stderr


def test_export_options_are_validated() -> None:
    with pytest.raises(ValueError, match="codec: got 'vp9'"):
        ExportOptions(codec="vp9")
    with pytest.raises(ValueError, match="crf"):
        ExportOptions(crf=99)


def test_import_lerobot_images_stored_in_the_parquet(tmp_path) -> None:
    """Image features (PNG inside the parquet, no videos): imported exactly."""
    spec = RobotSpec.load("cobot_magic")
    eps = _foreign_episodes(n_eps=1, n=6)
    src = tmp_path / "v21img"
    cams = {c: f"observation.images.{c}" for c in spec.camera_names}
    _write_v21(src, [{**eps[0], "images": {c: eps[0]["images"][k] for c, k in
                                           zip(spec.camera_names, ("top", "left", "right"))}}],
               30, list(spec.action_layout), cams, (32, 32), images=True)
    out = tmp_path / "ours"
    import_lerobot(src, out, spec, log=lambda *_: None)
    got = EpisodeReader(out).episode(0)
    for cam, key in zip(spec.camera_names, ("top", "left", "right")):
        assert np.array_equal(got[f"image.{cam}"], np.stack(eps[0]["images"][key]))
    assert np.array_equal(got["action"], eps[0]["action"])
