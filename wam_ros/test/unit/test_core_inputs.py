"""Input validation (core.inputs) and health levels (core.health): what a robot sends on a bad
day is refused with a reason, and /diagnostics levels follow silence, rate and refusals."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest
import yaml

from wam_ros.core.health import ERROR, OK, WARN, Health, InputHealth
from wam_ros.core.inputs import (
    ClockJump,
    InputRefused,
    JointStateCheck,
    check_image_size,
    check_stamp,
    encoded_image_size,
)
from wam_ros.core.robot import RobotSpec

PKG = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.fixture(params=["cobot_magic", "agibot_g1"])
def spec(request) -> RobotSpec:
    return RobotSpec.load(request.param)


def test_joint_states_refused_with_a_reason(spec: RobotSpec) -> None:
    check = JointStateCheck(spec)
    names, home = list(spec.action_layout), spec.home_vector()
    np.testing.assert_array_equal(check(names[::-1], list(home[::-1])), home)
    extra = [*names, "head_joint"]  # joints we do not command are ignored
    np.testing.assert_array_equal(check(extra, [*home, 3.0]), home)
    cases = {
        "length_mismatch": (names, list(home[:-1])),
        "duplicate_names": ([*names, names[0]], [*home, 0.0]),
        "missing_joints": (names[1:], list(home[1:])),
        "non_finite": (names, [np.nan] * len(names)),
        "out_of_limits": (names, list(home + 100.0)),
    }
    for reason, (n, q) in cases.items():
        with pytest.raises(InputRefused) as info:
            check(n, q)
        assert info.value.reason == reason, (reason, str(info.value))
    # at a hard stop, encoder noise within the margin is believed
    upper = spec.limits_array("upper")
    span = upper - spec.limits_array("lower")
    np.testing.assert_array_equal(check(names, list(upper + 0.01 * span)), upper + 0.01 * span)
    with pytest.raises(InputRefused, match="outside"):
        check(names, list(upper + 0.1 * span))


def test_stamps_from_the_future_refused() -> None:
    check_stamp(100.4, 100.0)
    check_stamp(50.0, 100.0)  # old is the synchroniser's business (max_age)
    for stamp, reason in ((100.6, "future_stamp"), (3700.0, "future_stamp"),
                          (float("nan"), "bad_stamp")):
        with pytest.raises(InputRefused) as info:
            check_stamp(stamp, 100.0)
        assert info.value.reason == reason


def _png_header(width: int, height: int) -> bytes:
    """A small PNG announcing width x height, whose pixel data is the first zlib block of
    that many zero rows (like a 0.8 MB file of a 16000x16000 image, cut short)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (3 * width + 1) * 16)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def test_image_size_read_from_the_header_before_decoding() -> None:
    ok, jpeg = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))
    assert ok and encoded_image_size(jpeg.tobytes()) == (64, 48)
    assert encoded_image_size(_png_header(5000, 6000)) == (5000, 6000)  # (header only)
    with pytest.raises(InputRefused) as info:
        check_image_size(5000, 6000, 4096 * 4096)
    assert info.value.reason == "too_large"
    with pytest.raises(InputRefused) as info:  # a bomb is refused while reading the header
        encoded_image_size(_png_header(16000, 16000))
    assert info.value.reason == "too_large"
    for data, reason in ((b"", "empty"), (b"\x00garbage" * 10, "undecodable")):
        with pytest.raises(InputRefused) as info:
            encoded_image_size(data)
        assert info.value.reason == reason


def test_compressed_images_never_raise_anything_but_image_errors() -> None:
    pytest.importorskip("rclpy")
    from sensor_msgs.msg import CompressedImage

    from wam_ros.nodes import conversions

    ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 200, np.uint8))
    bad = {"empty": b"", "garbage": b"\xff\xd8\xff" + b"\x00" * 100,
           "huge": _png_header(16000, 16000), "truncated": jpeg.tobytes()[:40]}
    for name, data in bad.items():
        msg = CompressedImage(format="png" if name == "huge" else "jpeg", data=data)
        with pytest.raises(conversions.ImageError):
            conversions.compressed_to_rgb(msg, max_pixels=4096 * 4096)
    good = conversions.compressed_to_rgb(CompressedImage(format="jpeg", data=jpeg.tobytes()),
                                         max_pixels=64 * 48)
    assert good.shape == (48, 64, 3)


def test_clock_jump_back_noticed_once() -> None:
    jump = ClockJump(tolerance_s=0.05)
    assert not any(jump.update(t) for t in (10.0, 10.1, 10.08, 10.2))
    assert jump.update(3.0) and not jump.update(3.01) and jump.jumps == 1


def test_input_health_levels() -> None:
    cam = InputHealth("cam_high", rate_hz=30.0, dead_after_s=1.0, window_s=2.0, started=0.0)
    assert cam.status(0.5).level == OK  # within the grace period
    assert cam.status(1.5).level == ERROR and "nothing received yet" in cam.status(1.5).message
    t = 1.5
    for _ in range(90):  # 30 Hz for 3 s
        t += 1 / 30
        cam.good(t)
    assert cam.status(t).level == OK
    for _ in range(20):  # 10 Hz for 2 s: a third of the rate
        t += 0.1
        cam.good(t)
    status = cam.status(t)
    assert status.level == WARN and "expected 30 Hz" in status.message
    for _ in range(60):  # back to 30 Hz, with one refused frame
        t += 1 / 30
        cam.good(t)
    cam.refuse(t, "too_large", "16000x16000")
    assert cam.status(t).level == WARN and "too_large" in cam.status(t).message
    assert cam.status(t + 0.5).level == WARN
    for _ in range(80):
        t += 1 / 30
        cam.good(t)
    assert cam.status(t).level == OK
    # refused readings only: as dead as silence
    for _ in range(40):
        t += 1 / 30
        cam.refuse(t, "non_finite")
    status = cam.status(t)
    assert status.level == ERROR and "non_finite" in status.message


def test_health_summary_takes_the_worst_and_says_why() -> None:
    health = Health("smoother")
    joints = health.add_input(InputHealth("joint_states", dead_after_s=1.0, started=0.0))
    joints.good(0.9)
    summary, per_input = health.statuses(1.0, [(OK, "running")], {"x": 1})
    assert (summary.level, summary.message) == (OK, "ok") and per_input.level == OK
    summary, _ = health.statuses(1.0, [(ERROR, "e-stop latched since t=0.5 s")], {})
    assert summary.level == ERROR and summary.message.startswith("e-stop latched")
    summary, _ = health.statuses(2.5, [(WARN, "holding")], {})
    assert summary.level == ERROR and "joint_states: nothing usable for 1.6 s" in summary.message
    assert summary.name == "wam_ros/smoother" and per_input.name == "wam_ros/smoother/joint_states"


def test_diagnostic_aggregator_analyzers_cover_every_node() -> None:
    doc = yaml.safe_load((PKG / "config" / "diagnostic_aggregator.yaml").read_text())
    params = doc["analyzers"]["ros__parameters"]
    parts = [p for a in params.values() if isinstance(a, dict) for p in a["contains"]]
    for component in ("observation", "policy", "decoder", "smoother"):
        for namespace in ("", "/robot1"):
            name = Health(component, namespace).name
            assert sum(p in name and p in f"{name}/cam_high" for p in parts) == 1, name
    assert Health("policy", "/robot1").name == "robot1/wam_ros/policy"


def test_estop_input_copies_on_other_subscriptions_do_not_undo_a_release() -> None:
    from wam_ros.core.inputs import EstopInput

    estop = EstopInput()
    # a stop latched before this node started: heard on the transient-local subscription
    assert estop.offer(True, "latched") and estop.asserted
    # a reliable publisher: true and false on `reliable`, copies on `best_effort` late
    assert estop.offer(True, "reliable") and estop.asserted
    assert estop.offer(False, "reliable") and not estop.asserted
    assert not estop.offer(True, "best_effort", best_effort_publishers=False)
    assert not estop.offer(True, "latched")  # a transient-local publisher's live copy
    assert not estop.asserted
    # a best-effort publisher speaks on `best_effort`
    assert estop.offer(True, "best_effort", best_effort_publishers=True) and estop.asserted
    assert estop.offer(False, "best_effort", best_effort_publishers=True)
    assert not estop.asserted
    with pytest.raises(ValueError, match="allowed: latched, reliable, best_effort"):
        estop.offer(True, "udp")
