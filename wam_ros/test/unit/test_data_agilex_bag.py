"""A bag as `ros2 bag record` leaves it on a CobotMagic running AgileX's official stack: cameras
on /camera_f|l|r/color/image_raw, followers on /puppet/joint_left|right, leaders on
/master/joint_left|right, no metadata of ours. It builds a dataset (robot found from the topics)
and replays offline through a policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wam_ros.data.convert import BuildOptions, build_dataset
from wam_ros.data.dataset_reader import EpisodeReader
from wam_ros.data.replay import ReplayOptions, replay
from wam_ros.data.synthetic import IMAGE, JOINT_STATE, image_cdr, joint_state_cdr

SECONDS, CAMERA_HZ, ARM_HZ = 2.0, 30.0, 100.0
T0_NS = 1_700_000_000_000_000_000


def arm(t: float, side: int) -> np.ndarray:
    """7 values in the Piper convention: joint1..6 (rad), joint7 jaw opening (m)."""
    q = np.array([0.2 * np.sin(t + side), 0.9 + 0.1 * t, -1.2 + 0.05 * t, 0.1, 0.3,
                  -0.1 * side, 0.02 + 0.02 * t])
    return q


def write_agilex_bag(path: Path) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer

    from wam_ros.data.cdr import typestore

    store = typestore()
    events = []
    for k in range(int(SECONDS * CAMERA_HZ)):
        t = k / CAMERA_HZ
        for i, cam in enumerate("flr"):
            img = np.zeros((48, 64, 3), np.uint8)
            img[..., i] = int(40 + 100 * t) % 255
            img[:, : 8 + 4 * k % 48, (i + 1) % 3] = 200
            events.append((t, f"/camera_{cam}/color/image_raw", IMAGE, img))
    for k in range(int(SECONDS * ARM_HZ)):
        t = k / ARM_HZ
        for side, name in enumerate(("left", "right")):
            q = arm(t, side)
            # followers named joint0..joint6 as some AgileX driver releases do; leaders 1..7
            events.append((t + 0.0003, f"/puppet/joint_{name}", JOINT_STATE,
                           ([f"joint{i}" for i in range(7)], q)))
            events.append((t + 0.0006, f"/master/joint_{name}", JOINT_STATE,
                           ([f"joint{i}" for i in range(1, 8)], q + 0.01)))
    events.sort(key=lambda e: e[0])
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {}
        for _, topic, msgtype, _ in events:
            if topic not in conns:
                conns[topic] = w.add_connection(topic, msgtype, typestore=store)
        for t, topic, msgtype, payload in events:
            ns = T0_NS + int(t * 1e9)
            if msgtype == IMAGE:
                data = image_cdr(payload, ns)
            else:
                data = joint_state_cdr(payload[0], payload[1], ns)
            w.write(conns[topic], ns + 2_000_000, data)


@pytest.fixture(scope="module")
def agilex_bag(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("agilex") / "rosbag2_2026_12_05-20_00_00"
    write_agilex_bag(path)
    return path


def test_agilex_bag_builds_a_dataset(agilex_bag: Path, tmp_path) -> None:
    out = tmp_path / "data"
    (summary,) = build_dataset([agilex_bag], out, BuildOptions(image_size=(32, 32)),
                               progress=False, log=lambda *_: None)
    assert not summary.skipped, summary.skipped
    assert summary.action_source == "teleop"
    r = EpisodeReader(out)
    assert r.info.robot == "cobot_magic" and len(r) == 1
    ep = r.episode(0)
    n = len(ep["state"])
    assert n >= int((SECONDS - 0.1) * 30)
    stamps = ep["stamp"]
    for k in (0, n // 2, n - 1):
        t = stamps[k] - T0_NS * 1e-9
        for side in (0, 1):
            want = arm(t, side)
            got = ep["state"][k, 7 * side: 7 * side + 7]
            np.testing.assert_allclose(got[:6], want[:6], atol=2e-3)
            # jaw opening (m) x 0.5 = one finger, normalised by its 0.038 m travel
            assert got[6] == pytest.approx(want[6] * 0.5 / 0.038, abs=2e-3)
            cmd = ep["action"][k, 7 * side: 7 * side + 7]
            np.testing.assert_allclose(cmd[:6], want[:6] + 0.01, atol=2e-3)


def test_agilex_bag_replays_offline(agilex_bag: Path, tiny_checkpoint) -> None:
    report = replay([agilex_bag], tiny_checkpoint("cobot_magic"),
                    ReplayOptions(scheduler="sync"), log=lambda _m: None)
    (ep,) = report["episodes"]
    assert ep["action_source"] == "teleop" and ep["observations"] > 30 and ep["chunks"] >= 2
    assert np.isfinite(report["action_mse"])


def test_bags_export_to_lerobot_directly(agilex_bag: Path, tmp_path) -> None:
    import json

    from wam_ros.cli import main as cli_main

    out = tmp_path / "lerobot"
    assert cli_main(["dataset", "export-lerobot", str(agilex_bag), "--out", str(out),
                     "--image-size", "32", "--task", "stack the cups", "--quiet"]) == 0
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["robot_type"] == "cobot_magic" and info["total_episodes"] == 1
    assert info["total_frames"] >= int((SECONDS - 0.1) * 30) and info["total_tasks"] == 1
    assert info["features"]["observation.images.cam_high"]["shape"] == [32, 32, 3]
    assert cli_main(["dataset", "export-lerobot", str(agilex_bag), "--out", str(out)]) == 1
