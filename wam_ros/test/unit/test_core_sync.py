"""Approximate-time synchronisation: sets, slop, joints at the images' stamp, stale and
out-of-order frames."""

from __future__ import annotations

import numpy as np
import pytest

from wam_ros.core.image import prepare_image
from wam_ros.core.sync import ApproximateSync

CAMS = ("a", "b", "c")


def img(v: int = 0) -> np.ndarray:
    return np.full((4, 4, 3), v, np.uint8)


def feed(sync, t, now=None, cams=CAMS):
    now = t if now is None else now
    for c in cams:
        sync.add_frame(c, t, img(), now)


def test_complete_set_within_slop_is_emitted_once():
    sync = ApproximateSync(CAMS, slop=0.02, max_age=0.5, joint_slop=0.03)
    sync.add_joint_state(1.0, np.zeros(3), 1.0)
    sync.add_joint_state(1.02, np.ones(3), 1.02)
    sync.add_frame("a", 1.000, img(1), 1.0)
    sync.add_frame("b", 1.010, img(2), 1.01)
    assert sync.poll(1.01) is None  # c missing
    sync.add_frame("c", 1.015, img(3), 1.02)
    out = sync.poll(1.02)
    assert out is not None and out.stamp == pytest.approx(1.015)
    assert [int(out.images[c][0, 0, 0]) for c in CAMS] == [1, 2, 3]
    assert out.received == 1.02  # when its last frame arrived (c), not its stamp
    assert sync.poll(1.03) is None  # not emitted twice


def test_joints_are_interpolated_at_the_stamp_of_the_images():
    sync = ApproximateSync(CAMS, slop=0.02, max_age=0.5, joint_slop=0.03, extrapolate=False)
    sync.add_joint_state(0.99, np.zeros(3), 0.99)
    sync.add_joint_state(1.00, np.array([0.0, 1.0, -1.0]), 1.0)
    feed(sync, 1.004)
    assert sync.poll(1.005) is None  # the joint state after the images may be in flight
    sync.add_joint_state(1.01, np.array([1.0, 1.0, 0.0]), 1.011)
    out = sync.poll(1.011)
    assert out is not None and out.joint_stamp == pytest.approx(1.004)
    np.testing.assert_allclose(out.joint_positions, [0.4, 1.0, -0.6])
    # the same instant: that joint state exactly, nothing awaited
    sync.add_joint_state(1.02, np.full(3, 2.0), 1.02)
    feed(sync, 1.02)
    out = sync.poll(1.02)
    assert out is not None and out.joint_stamp == 1.02
    np.testing.assert_array_equal(out.joint_positions, np.full(3, 2.0))


def test_joints_are_extrapolated_within_one_joint_state_interval():
    """No wait for the joint state after the images while the last two extrapolate to them;
    a set further out than one interval (the next joint state is late) waits as before."""
    sync = ApproximateSync(CAMS, slop=0.02, max_age=0.5, joint_slop=0.03)
    sync.add_joint_state(0.99, np.array([0.0, 1.0, 2.0]), 0.99)
    sync.add_joint_state(1.00, np.array([0.1, 1.0, 1.9]), 1.0)
    feed(sync, 1.004)
    out = sync.poll(1.005)
    assert out is not None and out.joint_stamp == pytest.approx(1.004)
    np.testing.assert_allclose(out.joint_positions, [0.14, 1.0, 1.86], atol=1e-9)
    assert sync.deadline is None
    # the joint state due at 1.01 did not come: a set at 1.015 waits for it
    feed(sync, 1.015)
    assert sync.poll(1.016) is None and sync.deadline == pytest.approx(1.045)
    sync.add_joint_state(1.02, np.array([0.3, 1.0, 1.7]), 1.021)
    out = sync.poll(1.021)
    assert out is not None
    np.testing.assert_allclose(out.joint_positions, [0.25, 1.0, 1.75], atol=1e-9)


def test_a_set_waits_at_most_joint_slop_for_the_next_joint_state():
    sync = ApproximateSync(CAMS, slop=0.02, max_age=0.5, joint_slop=0.03)
    sync.add_joint_state(1.00, np.ones(3), 1.0)
    feed(sync, 1.01)
    assert sync.poll(1.02) is None and sync.deadline == pytest.approx(1.04)
    out = sync.poll(1.041)  # no newer joint state came: the newest before the images
    assert sync.deadline is None
    assert out is not None and out.joint_stamp == 1.0
    np.testing.assert_array_equal(out.joint_positions, np.ones(3))


def test_frames_outside_slop_wait_for_a_matching_set():
    sync = ApproximateSync(CAMS, slop=0.01, max_age=0.5, joint_slop=0.05)
    sync.add_joint_state(1.0, np.zeros(3), 1.0)
    sync.add_frame("a", 1.00, img(), 1.0)
    sync.add_frame("b", 1.00, img(), 1.0)
    sync.add_frame("c", 1.05, img(), 1.05)
    assert sync.poll(1.05) is None
    sync.add_joint_state(1.05, np.ones(3), 1.05)
    feed(sync, 1.05, cams=("a", "b"))
    out = sync.poll(1.06)
    assert out is not None and out.stamp == pytest.approx(1.05)
    np.testing.assert_array_equal(out.joint_positions, np.ones(3))  # closest joint state
    assert sync.dropped["overtaken"] == 2  # a and b at 1.00 were skipped


def test_stale_and_out_of_order_frames_are_dropped_and_counted():
    sync = ApproximateSync(CAMS, slop=0.02, max_age=0.2, joint_slop=0.03)
    assert not sync.add_frame("a", 1.0, img(), now=1.5)
    assert sync.add_frame("a", 2.0, img(), now=2.0)
    assert not sync.add_frame("a", 1.9, img(), now=2.0)
    assert not sync.add_frame("a", 2.0, img(), now=2.0)
    assert sync.dropped == {"stale": 1, "out_of_order": 2}
    assert not sync.add_joint_state(2.0, np.array([np.nan, 0, 0]), 2.0)
    assert sync.dropped["joint_state_nan"] == 1


def test_stamps_from_the_future_are_dropped_not_remembered_and_reset_starts_over():
    """One frame or joint state stamped an hour ahead must not make every later one look out
    of order; after the clock jumps back, reset() takes the new clock's stamps."""
    sync = ApproximateSync(CAMS, slop=0.02, max_age=0.3, joint_slop=0.03, max_future=0.5)
    assert not sync.add_frame("a", 3602.0, img(), now=2.0)
    assert not sync.add_joint_state(3602.0, np.zeros(3), 2.0)
    assert sync.dropped == {"future": 1, "joint_state_future": 1}
    assert sync.last_drop == "joint_state_future"  # the reason the node reports
    assert sync.add_frame("a", 2.3, img(), now=2.0)  # within the margin: a skewed clock
    sync.add_joint_state(2.01, np.ones(3), 2.01)
    feed(sync, 2.01, cams=("b",))
    assert not sync.add_frame("a", 2.01, img(), now=2.02)  # older than a's last: in order
    sync.reset()  # the clock jumped back to 0.5
    sync.add_joint_state(0.5, np.ones(3), 0.5)
    feed(sync, 0.5)
    out = sync.poll(0.51)
    assert out is not None and out.stamp == pytest.approx(0.5)


def test_no_set_without_a_joint_state_close_in_time():
    sync = ApproximateSync(CAMS, slop=0.02, max_age=1.0, joint_slop=0.03)
    sync.add_joint_state(1.0, np.zeros(3), 1.0)
    feed(sync, 1.2)
    assert sync.poll(1.2) is None
    sync.add_joint_state(1.19, np.zeros(3), 1.2)
    assert sync.poll(1.2) is None  # waiting for the joint state after 1.2
    assert sync.poll(1.231) is not None  # none came: 1.19 is close enough


def test_old_frames_expire():
    sync = ApproximateSync(CAMS, slop=0.02, max_age=0.2, joint_slop=0.03)
    sync.add_joint_state(1.0, np.zeros(3), 1.0)
    feed(sync, 1.0, cams=("a", "b"))
    assert sync.poll(1.5) is None
    assert sync.dropped["expired"] == 2


def test_unknown_camera_is_named():
    sync = ApproximateSync(CAMS, slop=0.02, max_age=0.2, joint_slop=0.03)
    with pytest.raises(KeyError, match="unknown camera 'd'"):
        sync.add_frame("d", 1.0, img(), 1.0)


def test_prepare_image_crops_centre_and_resizes():
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, :80] = 255  # left border is cropped away by a centre crop to square
    out = prepare_image(frame, 224, 224, "center_crop")
    assert out.shape == (224, 224, 3) and out.max() == 0
    stretched = prepare_image(frame, 224, 224, "resize")
    assert stretched[:, 0].mean() == 255
    with pytest.raises(ValueError, match="allowed: resize, center_crop"):
        prepare_image(frame, 224, 224, "zoom")
