"""Mock ros2_control controllers follow joint_trajectory_controller / forward semantics."""

from __future__ import annotations

import numpy as np
import pytest

from wam_ros.sim.controllers import ControllerError, ForwardController, TrajectoryController

J = ("a", "b", "c")


def test_linear_interpolation_from_current_state_and_hold_at_end():
    ctrl = TrajectoryController(J, np.zeros(3))
    ctrl.command(list(J), start=10.0, times=np.array([1.0, 2.0]),
                 positions=np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0]]), velocities=None,
                 now=10.0)
    np.testing.assert_allclose(ctrl.goal(10.0), [0, 0, 0])
    np.testing.assert_allclose(ctrl.goal(10.5), [0.5, 1.0, 1.5])
    np.testing.assert_allclose(ctrl.goal(11.5), [1.5, 2.0, 2.5])
    np.testing.assert_allclose(ctrl.goal(99.0), [2.0, 2.0, 2.0])


def test_cubic_spline_hits_points_with_given_velocities():
    ctrl = TrajectoryController(("a",), np.zeros(1))
    ctrl.command(["a"], 0.0, np.array([1.0]), np.array([[1.0]]), np.array([[0.0]]), now=0.0)
    # zero velocity at both ends: symmetric S-curve, exactly half way at the midpoint
    assert ctrl.goal(0.5)[0] == pytest.approx(0.5)
    assert ctrl.goal(0.25)[0] < 0.25  # slower than linear at the start
    assert ctrl.goal(1.0)[0] == pytest.approx(1.0)


def test_partial_goal_keeps_other_joints_and_replaces_from_now():
    ctrl = TrajectoryController(J, np.array([1.0, 1.0, 1.0]))
    ctrl.command(["b"], 0.0, np.array([1.0]), np.array([[3.0]]), None, now=5.0)
    np.testing.assert_allclose(ctrl.goal(6.0), [1.0, 3.0, 1.0])
    # a new goal replaces the old one, starting from where the old one is now
    ctrl.command(["a"], 0.0, np.array([1.0]), np.array([[0.0]]), None, now=5.5)
    np.testing.assert_allclose(ctrl.goal(5.5), [1.0, 2.0, 1.0])
    np.testing.assert_allclose(ctrl.goal(6.5), [0.0, 2.0, 1.0])


def test_points_in_the_past_are_skipped():
    ctrl = TrajectoryController(("a",), np.zeros(1))
    ctrl.command(["a"], 1.0, np.array([1.0, 2.0, 3.0]), np.array([[1.0], [2.0], [3.0]]), None,
                 now=3.5)  # first two points already past
    assert ctrl.goal(3.5)[0] == pytest.approx(0.0)
    assert ctrl.goal(4.0)[0] == pytest.approx(3.0)


def test_bad_trajectories_are_rejected_with_a_reason():
    ctrl = TrajectoryController(J, np.zeros(3), allow_partial_joints_goal=False)
    with pytest.raises(ControllerError, match="unknown joints"):
        ctrl.command(["x"], 0, np.array([1.0]), np.zeros((1, 1)), None, 0.0)
    with pytest.raises(ControllerError, match="partial goals"):
        ctrl.command(["a"], 0, np.array([1.0]), np.zeros((1, 1)), None, 0.0)
    with pytest.raises(ControllerError, match="increase strictly"):
        ctrl.command(list(J), 0, np.array([1.0, 1.0]), np.zeros((2, 3)), None, 0.0)
    with pytest.raises(ControllerError, match="non-finite"):
        ctrl.command(list(J), 0, np.array([1.0]), np.full((1, 3), np.nan), None, 0.0)
    assert ctrl.rejected == 4 and ctrl.accepted == 0
    np.testing.assert_allclose(ctrl.goal(1.0), 0.0)


def test_forward_controller_holds_the_newest_command():
    ctrl = ForwardController(J, np.zeros(3))
    ctrl.command([1.0, 2.0, 3.0])
    np.testing.assert_allclose(ctrl.goal(0.0), [1, 2, 3])
    with pytest.raises(ControllerError):
        ctrl.command([1.0, 2.0])
    with pytest.raises(ControllerError):
        ctrl.command([1.0, np.inf, 0.0])
    np.testing.assert_allclose(ctrl.goal(1.0), [1, 2, 3])


def test_a_new_spline_starts_from_the_goal_velocity_it_replaces():
    # joint_trajectory_controller starts a new trajectory from its current desired state,
    # velocity included: streaming one point per tick must not stop the arm at every tick
    ctrl = TrajectoryController(("a",), np.zeros(1))
    ctrl.command(["a"], 0.0, np.array([1.0]), np.array([[1.0]]), np.array([[1.0]]), now=0.0)
    h = 1e-6
    v_before = (ctrl.goal(0.5 + h)[0] - ctrl.goal(0.5 - h)[0]) / (2 * h)
    assert v_before > 1.0  # mid-way through an S-curve from rest
    ctrl.command(["a"], 0.0, np.array([0.5]), np.array([[2.0]]), np.array([[1.0]]), now=0.5)
    v_after = (ctrl.goal(0.5 + 2 * h)[0] - ctrl.goal(0.5 + h)[0]) / h
    assert v_after == pytest.approx(v_before, rel=1e-3)
    assert ctrl.goal(1.0)[0] == pytest.approx(2.0)
    # replacing a linear segment starts from its slope
    lin = TrajectoryController(("a",), np.zeros(1))
    lin.command(["a"], 0.0, np.array([1.0]), np.array([[2.0]]), None, now=0.0)
    lin.command(["a"], 0.0, np.array([1.0]), np.array([[3.0]]), np.array([[0.0]]), now=0.5)
    assert (lin.goal(0.5 + h)[0] - lin.goal(0.5)[0]) / h == pytest.approx(2.0, rel=1e-3)
