"""Teleop operators, the leader <-> action mapping, key parsing and the live playback schedule
(ROS-free parts of recording and replay)."""

from __future__ import annotations

import numpy as np
import pytest

from wam_ros.core.robot import RobotSpec
from wam_ros.data.bag_reader import open_bag
from wam_ros.data.cdr import deserialize, header_stamp_ns
from wam_ros.data.keys import parse_keys
from wam_ros.data.playback import Playback, PlaybackSettings
from wam_ros.data.recorder import RecorderNodeSettings, parse_key_bindings
from wam_ros.data.synthetic import write_synthetic_episode
from wam_ros.data.teleop import (
    KeyboardOperator,
    LeaderMap,
    ScriptedOperator,
    TeleopSettings,
    make_operator,
)


@pytest.mark.parametrize("robot", ["cobot_magic", "agibot_g1"])
def test_scripted_operator_is_smooth_inside_limits_and_starts_at_the_follower(robot):
    spec = RobotSpec.load(robot)
    op = ScriptedOperator(spec, seed=3)
    grip = spec.gripper_mask()
    start = np.where(grip, 0.9, spec.joint_to_action(spec.home_vector()) + 0.01)
    dt = 1 / 50
    actions = np.array([op.action(k * dt, start) for k in range(50 * 20)])
    assert np.allclose(actions[0], start)
    lo = np.where(grip, 0.0, spec.limits_array("lower"))
    hi = np.where(grip, 1.0, spec.limits_array("upper"))
    assert np.all(actions >= lo) and np.all(actions <= hi)
    speed = np.abs(np.diff(actions, axis=0)).max(0) / dt
    vmax = spec.limits_array("velocity")
    assert np.all(speed[~grip] <= vmax[~grip])
    assert np.ptp(actions[:, ~grip], axis=0).min() > 0.01  # every joint moves
    assert np.ptp(actions[:, grip], axis=0).min() > 0.5  # grippers open and close
    again = ScriptedOperator(spec, seed=3)
    assert np.array_equal(again.action(7.0, start), op.action(7.0, start))  # seeded


def test_keyboard_operator_jogs_the_selected_joint():
    spec = RobotSpec.load("cobot_magic")
    op = KeyboardOperator(spec, step=0.05)
    q0 = spec.joint_to_action(spec.home_vector())
    assert np.allclose(op.action(0.0, q0), q0)
    op.feed(["]", "+", "+", "up"])  # joint 2 (left_joint2) up three steps
    q = op.action(0.1, q0)
    assert op.selected_joint == "left_joint2" and q[1] == pytest.approx(q0[1] + 0.15)
    op.feed(["g"])  # the left gripper closes (it starts open)
    assert op.action(0.2, q0)[6] == 0.0
    op.feed(["[", "[", "-", "-", "-"] * 3)  # wraps around to the right gripper
    q = op.action(0.3, q0)
    grip = spec.gripper_mask()
    assert np.all(q[grip] >= 0) and np.all(q[grip] <= 1) and q[13] < 1.0
    op.feed(["h"])
    assert np.allclose(op.action(0.4, q0), q0)


@pytest.mark.parametrize("robot", ["cobot_magic", "agibot_g1"])
def test_leader_messages_round_trip_to_the_action(robot):
    spec = RobotSpec.load(robot)
    leaders = LeaderMap(spec)
    action = spec.joint_to_action(spec.home_vector())
    action[0] += 0.2
    values = leaders.to_messages(action)
    assert np.allclose(leaders.to_action(values), action)
    if robot == "cobot_magic":  # Piper leader: 7 values, gripper as the jaw opening (2x)
        left = values["left"]
        assert len(left) == 7 and left[6] == pytest.approx(2 * spec.home["left_joint7"])
    partial = leaders.to_action({leaders.sources[0].name: values[leaders.sources[0].name]})
    assert np.isfinite(partial).sum() == len(leaders.sources[0].joints)


def test_operators_plug_in_by_name_and_settings_validate():
    spec = RobotSpec.load("cobot_magic")
    op = make_operator("wam_ros.data.teleop:ScriptedOperator", spec, seed=1)
    assert op.action(0.0, None).shape == (spec.action_dim,)
    with pytest.raises(ValueError, match="allowed: scripted, keyboard"):
        make_operator("joystick", spec)
    with pytest.raises(ValueError, match="cannot load"):
        make_operator("wam_ros.data.teleop:Nope", spec)
    with pytest.raises(ValueError, match="rate_hz"):
        TeleopSettings(rate_hz=0.0)
    with pytest.raises(ValueError, match="operator"):
        TeleopSettings(operator="mouse")


def test_terminal_keys_and_pedal_bindings():
    assert parse_keys("a \x1b[A\x1b[6~\x1bOPq\x1b") == [
        "a", "space", "up", "pagedown", "f1", "q", "escape"]
    bindings = parse_key_bindings(RecorderNodeSettings().keys)
    assert bindings["space"] == bindings["pagedown"] == "toggle"
    assert bindings["d"] == "discard" and bindings["y"] == "success"
    with pytest.raises(ValueError, match="allowed: key:action"):
        parse_key_bindings("x:explode")
    with pytest.raises(ValueError, match="extra_topics"):
        RecorderNodeSettings(extra_topics=("no_slash",))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_playback_keeps_timing_clock_and_shifts_stamps_on_loop(tmp_path, storage):
    bag = open_bag(write_synthetic_episode(tmp_path / "b", "cobot_magic", 1.0,
                                           storage=storage))
    pb = Playback(bag, PlaybackSettings(bag=str(bag.path), rate=2.0, loop=True, clock_hz=100))
    events = []
    for ev in pb.events():
        events.append(ev)
        if pb.passes >= 2:
            break
    msgs = [e for e in events if e.topic is not None]
    clock = [e for e in events if e.topic is None]
    assert len(msgs) == 2 * bag.message_count
    times = [e.time_ns for e in events]
    assert times == sorted(times)  # never backwards, also across the loop
    walls = [e.wall_s for e in events]
    assert walls == sorted(walls)
    assert walls[-1] == pytest.approx(2 * (pb.loop_ns * 1e-9) / 2.0, abs=0.05)  # rate 2
    assert len(clock) >= 2 * 99
    first, second = msgs[0], msgs[bag.message_count]
    assert first.topic == second.topic
    assert header_stamp_ns(second.data, second.msgtype) - header_stamp_ns(
        first.data, first.msgtype) == pb.loop_ns
    a, b = deserialize(first.data, first.msgtype), deserialize(second.data, second.msgtype)
    assert a.header.frame_id == b.header.frame_id  # everything but the stamp unchanged
    with pytest.raises(ValueError, match="not in"):
        Playback(bag, PlaybackSettings(bag=str(bag.path), topics=("/nope",)))
    with pytest.raises(ValueError, match="rate"):
        PlaybackSettings(bag="x", rate=0)


def test_record_refuses_the_expert_operator_without_the_simulator(capsys):
    from wam_ros.cli import main

    for argv in (["--sim", "fake", "--episodes", "1"], ["--sim", "mujoco"]):
        assert main(["record", "--teleop", "expert", *argv]) == 2
        assert "--teleop expert needs --sim mujoco and --episodes N" in capsys.readouterr().err
