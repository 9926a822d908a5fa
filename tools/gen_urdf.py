#!/usr/bin/env python3
"""Writes wam_ros/urdf/{cobot_magic,agibot_g1}.urdf from the kinematic facts below.

The URDFs are our own descriptions (primitive geometry, approximate link lengths and masses)
built from public facts about the robots: joint names, axes, position limits and gripper travel.
Velocity/effort limits here are hardware-level; config/robots/*.yaml holds the (smaller) limits we
command with, and a test checks that both files agree. Re-run after editing:

    python tools/gen_urdf.py
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "wam_ros" / "urdf"


@dataclass
class Link:
    name: str
    mass: float = 0.0
    box: tuple[float, float, float] | None = None
    cylinder: tuple[float, float] | None = None  # radius, length (along z)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)  # geometry centre in the link frame
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)
    material: str = "grey"

    def xml(self) -> str:
        if self.mass <= 0.0:
            return f'  <link name="{self.name}"/>\n'
        if self.box is not None:
            geom = '<box size="{:.4f} {:.4f} {:.4f}"/>'.format(*self.box)
            x, y, z = self.box
            pairs = ((y, z), (x, z), (x, y))
            ixx, iyy, izz = (self.mass / 12.0 * (b * b + c * c) for b, c in pairs)
        else:
            assert self.cylinder is not None
            r, length = self.cylinder
            geom = f'<cylinder radius="{r:.4f}" length="{length:.4f}"/>'
            ixx = iyy = self.mass / 12.0 * (3 * r * r + length * length)
            izz = self.mass * r * r / 2.0
        o = "{:.4f} {:.4f} {:.4f}".format(*self.origin)
        rpy = "{:.4f} {:.4f} {:.4f}".format(*self.rpy)
        return (
            f'  <link name="{self.name}">\n'
            f"    <inertial>\n"
            f'      <origin xyz="{o}" rpy="{rpy}"/>\n'
            f'      <mass value="{self.mass:.3f}"/>\n'
            f'      <inertia ixx="{ixx:.6f}" ixy="0" ixz="0" iyy="{iyy:.6f}" iyz="0" '
            f'izz="{izz:.6f}"/>\n'
            f"    </inertial>\n"
            f'    <visual>\n      <origin xyz="{o}" rpy="{rpy}"/>\n'
            f"      <geometry>{geom}</geometry>\n"
            f'      <material name="{self.material}"/>\n    </visual>\n'
            f'    <collision>\n      <origin xyz="{o}" rpy="{rpy}"/>\n'
            f"      <geometry>{geom}</geometry>\n    </collision>\n"
            f"  </link>\n"
        )


@dataclass
class Joint:
    name: str
    type: str  # revolute | prismatic | fixed
    parent: str
    child: str
    xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)
    axis: tuple[float, float, float] = (0.0, 0.0, 1.0)
    lower: float = 0.0
    upper: float = 0.0
    velocity: float = 0.0
    effort: float = 0.0
    mimic: tuple[str, float] | None = None  # (joint, multiplier)

    def xml(self) -> str:
        s = (
            f'  <joint name="{self.name}" type="{self.type}">\n'
            f'    <parent link="{self.parent}"/>\n    <child link="{self.child}"/>\n'
            '    <origin xyz="{:.4f} {:.4f} {:.4f}" rpy="{:.4f} {:.4f} {:.4f}"/>\n'.format(
                *self.xyz, *self.rpy
            )
        )
        if self.type != "fixed":
            s += '    <axis xyz="{:g} {:g} {:g}"/>\n'.format(*self.axis)
            s += (
                f'    <limit lower="{self.lower:g}" upper="{self.upper:g}" '
                f'velocity="{self.velocity:g}" effort="{self.effort:g}"/>\n'
            )
            s += '    <dynamics damping="0.5" friction="0.05"/>\n'
        if self.mimic is not None:
            joint, multiplier = self.mimic
            s += f'    <mimic joint="{joint}" multiplier="{multiplier:g}" offset="0"/>\n'
        return s + "  </joint>\n"


@dataclass
class Robot:
    name: str
    links: list[Link] = field(default_factory=list)
    joints: list[Joint] = field(default_factory=list)

    def add(self, link: Link, joint: Joint | None = None) -> None:
        self.links.append(link)
        if joint is not None:
            self.joints.append(joint)

    def camera(self, name: str, parent: str, xyz, rpy) -> None:
        """A camera body frame (x forward) plus its optical frame (z forward, REP 103)."""
        self.add(
            Link(f"{name}_link", 0.05, box=(0.03, 0.09, 0.025), material="black"),
            Joint(f"{name}_joint", "fixed", parent, f"{name}_link", xyz, rpy),
        )
        self.add(
            Link(f"{name}_optical_frame"),
            Joint(
                f"{name}_optical_joint", "fixed", f"{name}_link", f"{name}_optical_frame",
                rpy=(-1.5708, 0.0, -1.5708),
            ),
        )

    def xml(self, comment: str) -> str:
        materials = (
            '  <material name="grey"><color rgba="0.6 0.6 0.62 1"/></material>\n'
            '  <material name="dark"><color rgba="0.2 0.2 0.22 1"/></material>\n'
            '  <material name="black"><color rgba="0.05 0.05 0.05 1"/></material>\n'
            '  <material name="white"><color rgba="0.92 0.92 0.92 1"/></material>\n'
        )
        body = "".join(x.xml() for x in self.links) + "".join(j.xml() for j in self.joints)
        return (
            '<?xml version="1.0"?>\n'
            f"<!-- {comment}\n"
            "     Generated by tools/gen_urdf.py; edit that file, not this one. -->\n"
            f'<robot name="{self.name}">\n{materials}{body}</robot>\n'
        )


# Piper: (name suffix, axis, joint origin in parent frame, lower, upper, hw velocity, effort).
# At zero the upper arm points up and the forearm is folded back down along it; joint2 leans
# the arm forward, negative joint3 unfolds the forearm.
PIPER = [
    ("1", (0, 0, 1), (0.0, 0.0, 0.123), -2.618, 2.618, 3.14, 40.0),
    ("2", (0, 1, 0), (0.0, 0.0, 0.0), 0.0, 3.14, 3.14, 40.0),
    ("3", (0, 1, 0), (0.0, 0.0, 0.285), -2.967, 0.0, 3.14, 30.0),
    ("4", (0, 0, 1), (0.0, 0.0, -0.10), -1.832, 1.832, 3.14, 10.0),
    ("5", (0, 1, 0), (0.0, 0.0, -0.15), -1.22, 1.22, 3.14, 10.0),
    ("6", (0, 0, 1), (0.0, 0.0, -0.05), -3.14, 3.14, 3.14, 10.0),
]
PIPER_LINKS = [  # link geometry: (mass, cylinder radius, length, centre z)
    (0.9, 0.045, 0.123, -0.0615),
    (1.2, 0.035, 0.285, 0.1425),
    (0.8, 0.03, 0.10, -0.05),
    (0.5, 0.028, 0.15, -0.075),
    (0.3, 0.025, 0.05, -0.025),
    (0.3, 0.03, 0.04, -0.02),
]


def piper_arm(robot: Robot, side: str, parent: str, xyz) -> None:
    prefix = f"{side}_"
    robot.add(
        Link(f"{prefix}base_link", 1.5, cylinder=(0.06, 0.05), origin=(0, 0, 0.025),
             material="dark"),
        Joint(f"{prefix}base_joint", "fixed", parent, f"{prefix}base_link", xyz),
    )
    prev = f"{prefix}base_link"
    for (suffix, axis, origin, lo, hi, vel, eff), (mass, r, length, cz) in zip(PIPER, PIPER_LINKS):
        link = f"{prefix}link{suffix}"
        robot.add(
            Link(link, mass, cylinder=(r, length), origin=(0, 0, cz), material="white"),
            Joint(f"{prefix}joint{suffix}", "revolute", prev, link, origin, axis=axis,
                  lower=lo, upper=hi, velocity=vel, effort=eff),
        )
        prev = link
    # gripper: palm plus two fingers on prismatic joints, 0..0.038 m each (0.076 m total travel)
    robot.add(
        Link(f"{prefix}gripper_base", 0.4, box=(0.04, 0.11, 0.04), origin=(0, 0, -0.02),
             material="dark"),
        Joint(f"{prefix}gripper_base_joint", "fixed", prev, f"{prefix}gripper_base",
              (0.0, 0.0, -0.04)),
    )
    for i, sign in ((7, 1.0), (8, -1.0)):
        robot.add(
            Link(f"{prefix}link{i}", 0.05, box=(0.02, 0.01, 0.06), origin=(0, 0, -0.03),
                 material="black"),
            Joint(f"{prefix}joint{i}", "prismatic", f"{prefix}gripper_base", f"{prefix}link{i}",
                  (0.0, sign * 0.005, -0.04), axis=(0, sign, 0), lower=0.0, upper=0.038,
                  velocity=0.2, effort=20.0,
                  mimic=None if i == 7 else (f"{prefix}joint7", 1.0)),
        )
    robot.camera(f"cam_{side}_wrist", f"{prefix}gripper_base", (0.06, 0.0, 0.0),
                 (0.0, 1.5708, 0.0))


def cobot_magic() -> str:
    robot = Robot("cobot_magic")
    robot.add(Link("base_link", 20.0, box=(0.5, 0.8, 0.04), origin=(0, 0, -0.02), material="dark"))
    piper_arm(robot, "left", "base_link", (0.0, 0.3, 0.0))
    piper_arm(robot, "right", "base_link", (0.0, -0.3, 0.0))
    robot.add(
        Link("mast_link", 1.0, box=(0.03, 0.03, 0.6), origin=(0, 0, 0.3), material="dark"),
        Joint("mast_joint", "fixed", "base_link", "mast_link", (-0.2, 0.0, 0.0)),
    )
    robot.camera("cam_high", "mast_link", (0.02, 0.0, 0.6), (0.0, 0.75, 0.0))
    return robot.xml("AgileX CobotMagic: two Piper 6-DoF arms with parallel grippers.")


# G1 arm: 7 joints (axis, origin in parent frame, lower, upper); hardware limits unpublished,
# so the URDF carries the conservative range we command with (config/robots/agibot_g1.yaml).
G1_ARM = [
    ((0, 1, 0), (0.0, 0.0, 0.0), -2.0, 2.0),    # shoulder pitch
    ((1, 0, 0), (0.0, 0.0, -0.06), -1.5, 1.5),  # shoulder roll
    ((0, 0, 1), (0.0, 0.0, -0.08), -2.0, 2.0),  # upper-arm yaw
    ((0, 1, 0), (0.0, 0.0, -0.20), -2.0, 0.3),  # elbow
    ((0, 0, 1), (0.0, 0.0, -0.08), -2.5, 2.5),  # forearm yaw
    ((0, 1, 0), (0.0, 0.0, -0.17), -1.0, 1.0),  # wrist pitch
    ((1, 0, 0), (0.0, 0.0, -0.04), -1.5, 1.5),  # wrist roll
]
G1_LINKS = [(1.0, 0.05, 0.06), (1.0, 0.045, 0.08), (1.2, 0.045, 0.20), (0.8, 0.04, 0.08),
            (0.9, 0.04, 0.17), (0.3, 0.035, 0.04), (0.3, 0.035, 0.04)]


def g1_arm(robot: Robot, side: str, idx: int, gripper_idx: int, y: float) -> None:
    s = side[0]
    prev = "torso_link"
    for k, ((axis, origin, lo, hi), (mass, r, length)) in enumerate(zip(G1_ARM, G1_LINKS), 1):
        link = f"arm_{s}_link{k}"
        xyz = (0.0, y, 0.35) if k == 1 else origin
        robot.add(
            Link(link, mass, cylinder=(r, length), origin=(0, 0, -length / 2), material="white"),
            Joint(f"idx{idx}{k}_arm_{s}_joint{k}", "revolute", prev, link, xyz, axis=axis,
                  lower=lo, upper=hi, velocity=3.0, effort=60.0 if k <= 4 else 20.0),
        )
        prev = link
    hand = f"gripper_{s}_base"
    robot.add(
        Link(hand, 0.5, box=(0.05, 0.10, 0.06), origin=(0, 0, -0.03), material="dark"),
        Joint(f"gripper_{s}_base_joint", "fixed", prev, hand, (0.0, 0.0, -0.04)),
    )
    # outer finger: revolute 0 (open) .. 1 rad (closed); inner finger mirrors it
    outer = f"idx{gripper_idx}1_gripper_{s}_outer_joint1"
    for name, sign in ((outer, 1.0),
                       (f"idx{gripper_idx}2_gripper_{s}_inner_joint1", -1.0)):
        link = name.replace("_joint1", "_link")
        robot.add(
            Link(link, 0.05, box=(0.015, 0.015, 0.07), origin=(0, 0, -0.035), material="black"),
            Joint(name, "revolute", hand, link, (0.0, sign * 0.035, -0.06),
                  axis=(-sign, 0, 0),
                  lower=0.0, upper=1.0, velocity=4.0, effort=10.0,
                  mimic=None if sign > 0 else (outer, 1.0)),
        )
    robot.camera(f"hand_{side}_color", hand, (0.05, 0.0, -0.02), (0.0, 1.5708, 0.0))


def agibot_g1() -> str:
    robot = Robot("agibot_g1")
    robot.add(Link("base_link", 30.0, box=(0.5, 0.5, 0.8), origin=(0, 0, 0.4), material="dark"))
    robot.add(
        Link("waist_link", 3.0, cylinder=(0.1, 0.1), origin=(0, 0, 0.05), material="dark"),
        Joint("idx01_body_joint1", "revolute", "base_link", "waist_link", (0.0, 0.0, 0.8),
              axis=(0, 1, 0), lower=0.0, upper=0.5, velocity=1.0, effort=200.0),
    )
    robot.add(
        Link("torso_link", 12.0, box=(0.25, 0.35, 0.45), origin=(0, 0, 0.225), material="white"),
        Joint("idx02_body_joint2", "revolute", "waist_link", "torso_link", (0.0, 0.0, 0.1),
              axis=(0, 0, 1), lower=-0.5, upper=0.5, velocity=1.0, effort=200.0),
    )
    robot.add(
        Link("head_yaw_link", 0.3, cylinder=(0.03, 0.08), origin=(0, 0, 0.04), material="dark"),
        Joint("idx11_head_joint1", "revolute", "torso_link", "head_yaw_link", (0.0, 0.0, 0.45),
              axis=(0, 0, 1), lower=-1.0, upper=1.0, velocity=2.0, effort=10.0),
    )
    robot.add(
        Link("head_link", 1.2, box=(0.16, 0.18, 0.16), origin=(0, 0, 0.08), material="white"),
        Joint("idx12_head_joint2", "revolute", "head_yaw_link", "head_link", (0.0, 0.0, 0.08),
              axis=(0, 1, 0), lower=-0.3, upper=0.6, velocity=2.0, effort=10.0),
    )
    robot.camera("head_color", "head_link", (0.09, 0.0, 0.08), (0.0, 0.6, 0.0))
    g1_arm(robot, "left", 2, 4, 0.22)
    g1_arm(robot, "right", 6, 8, -0.22)
    return robot.xml("AgiBot G1 upper body: two 7-DoF arms with grippers, head and waist.")


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, fn in (("cobot_magic", cobot_magic), ("agibot_g1", agibot_g1)):
        (OUT / f"{name}.urdf").write_text(fn())
        print("wrote", OUT / f"{name}.urdf")
