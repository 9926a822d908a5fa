"""Shared fixtures: every test that touches DDS gets loopback-only discovery, our FastDDS
profile and a ROS_DOMAIN_ID of its own, so parallel runs and tests never see each other."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

from wam_ros.dds import profile_environment

PKG_ROOT = Path(__file__).resolve().parents[1]
# launch_testing files: run by test_launch_real.py through launch_test with their arguments
# (launch_testing's pytest plugin would collect them on their own, without any)
collect_ignore = ["launch"]
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(PKG_ROOT / "config" / "fastdds.xml"))
# Fast DDS 2 (Jazzy, Humble) reads the profile only from FASTRTPS_DEFAULT_PROFILES_FILE
os.environ.update(profile_environment(PKG_ROOT / "config" / "fastdds.xml"))

# Domain IDs 20..99, starting from a per-run offset so that two pytest runs on one machine
# rarely share one.
_domains = itertools.count((os.getpid() % 40) * 2)


def next_domain_id() -> int:
    return 20 + next(_domains) % 80


@pytest.fixture
def ros_domain(monkeypatch: pytest.MonkeyPatch) -> int:
    """A fresh ROS_DOMAIN_ID, exported for child processes started by the test."""
    domain = next_domain_id()
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return domain


@pytest.fixture
def rclpy_context(ros_domain: int):
    """A private rclpy Context on the test's own domain (no global init)."""
    rclpy = pytest.importorskip("rclpy")
    context = rclpy.context.Context()
    rclpy.init(context=context, domain_id=ros_domain)
    try:
        yield context
    finally:
        context.try_shutdown()


@pytest.fixture
def python_exe() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Factory: an untrained tiny-config checkpoint for a robot (safetensors + YAML), made once
    per robot and session. Enough to drive the node graph; training is tested elsewhere."""
    made: dict[str, Path] = {}

    def make(robot: str = "cobot_magic", action_space: str = "delta") -> Path:
        key = f"{robot}_{action_space}"
        if key not in made:
            from wam_ros.model.testing import make_tiny_checkpoint

            out = tmp_path_factory.mktemp(f"ckpt_{key}")
            made[key] = make_tiny_checkpoint(out, robot, action_space=action_space)
        return made[key]

    return make
