"""`wam-ros robots [NAME]`: list robot configs, or validate and summarise one."""

from __future__ import annotations

import argparse

from wam_ros.core.config import ConfigError
from wam_ros.core.robot import RobotSpec, available_robots


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("robots", help="list robot configs or check and summarise one")
    p.add_argument("robot", nargs="?", help="robot name or path to a robot YAML file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.robot:
        for name in available_robots():
            print(name)
        return 0
    try:
        spec = RobotSpec.load(args.robot)
    except ConfigError as exc:
        print(f"error: {exc}")
        return 1
    print(f"{spec.name}: {spec.description}")
    print(f"  source       {spec.source}")
    print(f"  urdf         {spec.urdf}")
    print(f"  rates        actions {spec.action_rate_hz:g} Hz, "
          f"control {spec.control_rate_hz:g} Hz")
    print(f"  action dim   {spec.action_dim}: {', '.join(spec.action_layout)}")
    for c in spec.cameras:
        print(f"  camera       {c.name:18s} {c.topic} {c.width}x{c.height} {c.encoding}")
    for c in spec.controllers:
        print(f"  controller   {c.name:26s} {c.type:17s} {c.topic}")
    return 0
