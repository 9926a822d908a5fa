"""The follower's joint positions in a bag, wherever the recording put them. ROS-free.

Our recorder stores them as one `sensor_msgs/JointState` on the robot's `joint_state_topic`
with our joint names. A plain `ros2 bag record` on a CobotMagic running AgileX's official stack
has none of that: the follower arms publish on `/puppet/joint_left|right`, 7 values each in the
same convention as the leader arms on `/master/joint_left|right` (joint1..joint6 in rad, joint7
the gripper's jaw opening in m), which the robot config's `teleop:` section already maps onto
our joints. So for such a bag the follower sources are the teleop sources with `/master/` read
as `/puppet/`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import numpy as np

from wam_ros.core.robot import RobotSpec, TeleopSource

AGILEX_LEADER, AGILEX_FOLLOWER = "/master/", "/puppet/"


def message_values(src: TeleopSource, msg: Any) -> np.ndarray | None:
    """A JointState / JointTrajectory message -> the source's values in its `names` order: by
    name, or by position where the message's names differ but the count matches (AgileX's
    drivers name them joint0..joint6 in some releases). None when unusable."""
    if src.type == "joint_state":
        names, values = list(msg.name), list(msg.position)
    else:
        if not msg.points:
            return None
        names, values = list(msg.joint_names), list(msg.points[0].positions)
    if names and len(values) == len(names) and all(n in names for n in src.names):
        v = np.array([values[names.index(n)] for n in src.names], np.float64)
    elif len(values) == len(src.names):
        v = np.asarray(values, np.float64)
    else:
        return None
    return v if np.all(np.isfinite(v)) else None


def agilex_follower_sources(spec: RobotSpec, topics: Iterable[str]
                            ) -> tuple[TeleopSource, ...] | None:
    """The follower sources of an AgileX bag (see the module doc), or None if `topics` lack
    them or the robot has no teleop section of leader topics under /master/."""
    if spec.teleop is None:
        return None
    present = set(topics)
    out = []
    for s in spec.teleop.sources:
        if AGILEX_LEADER not in s.topic or s.space != "absolute":
            return None
        topic = s.topic.replace(AGILEX_LEADER, AGILEX_FOLLOWER, 1)
        if topic not in present:
            return None
        out.append(dataclasses.replace(s, name=f"follower_{s.name}", topic=topic,
                                       type="joint_state"))
    return tuple(out)


class FollowerStates:
    """Follower joint positions (joint units, action layout) from a bag's messages."""

    def __init__(self, spec: RobotSpec, bag_topics: Iterable[str]) -> None:
        self.spec = spec
        present = set(bag_topics)
        self.layout = list(spec.action_layout)
        self.sources: dict[str, TeleopSource] = {}
        if spec.joint_state_topic in present:
            self.kind = "joint_states"
            self.topics = {spec.joint_state_topic}
        else:
            sources = agilex_follower_sources(spec, present)
            self.kind = "agilex" if sources else ""
            self.sources = {s.topic: s for s in sources or ()}
            self.topics = set(self.sources)
        self._latest: dict[str, np.ndarray] = {}
        self._index = {s.topic: np.array([self.layout.index(j) for j in s.joints])
                       for s in self.sources.values()}

    def describe(self) -> str:
        return (self.spec.joint_state_topic if self.kind != "agilex"
                else " + ".join(sorted(self.topics)))

    def update(self, topic: str, msg: Any) -> np.ndarray | None:
        """The full follower state after this message, once every source has been heard
        (the other arm's newest values held)."""
        if self.kind == "joint_states":
            index = {n: i for i, n in enumerate(msg.name)}
            if not all(j in index for j in self.layout) or len(msg.position) != len(msg.name):
                return None
            q = np.array([msg.position[index[j]] for j in self.layout])
            return q if np.all(np.isfinite(q)) else None
        src = self.sources.get(topic)
        if src is None:
            return None
        values = message_values(src, msg)
        if values is None:
            return None
        self._latest[topic] = values * np.asarray(src.scale)
        if len(self._latest) < len(self.sources):
            return None
        q = np.zeros(len(self.layout))
        for t, v in self._latest.items():
            q[self._index[t]] = v
        return q


__all__ = ["FollowerStates", "agilex_follower_sources", "message_values"]
