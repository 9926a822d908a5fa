"""Shared fixtures: every test that touches DDS gets loopback-only discovery, our FastDDS
profile and a ROS_DOMAIN_ID of its own, so parallel runs and tests never see each other."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import itertools
import os
import signal
import sys
import time
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


# Every process a test starts carries this mark in its environment (inherited by its own
# children, orphaned or not), so what a test left running can be found and ended.
TEST_MARK_ENV = "WAM_ROS_TEST_MARK"
_marks = itertools.count(1)
LEFT_RUNNING: list[str] = []


def _marked_processes(mark: str) -> list[int]:
    needle = f"{TEST_MARK_ENV}={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone, or not ours
            continue
    return found


@functools.cache
def _fastdds_shm_tool():
    tool = Path(sys.prefix) / "tools" / "fastdds" / "shm" / "clean.py"
    if not tool.is_file() or not sys.platform.startswith("linux"):
        return None
    spec = importlib.util.spec_from_file_location("fastdds_shm_clean", tool)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a tool of another Fast DDS version: the tests run without it
        print(f"[conftest] fastdds shm tool not loaded: {exc}", file=sys.stderr)
        return None
    return module


def clean_fastdds_shm() -> None:
    """Fast DDS's own `fastdds shm clean` (the tool its wheels ship, run in-process: its
    command-line wrapper wants psutil): removes the shared-memory ports and segments whose
    owner is gone, never one a live process holds. Every node killed with SIGKILL leaves its
    own behind; piled up by the hundreds, they once made a new participant fail with
    "open_and_lock_file failed" and lose its traffic (a fault-injection run got no chunks)."""
    module = _fastdds_shm_tool()
    if module is None:
        return
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                module.Clean().run(force=False)  # Fast DDS 3 (Kilted)
            except TypeError:
                module.Clean().run()  # Fast DDS 2 (Jazzy): no force argument
    except Exception as exc:  # a tool of another Fast DDS version: the tests run without it
        print(f"[conftest] fastdds shm clean failed: {exc}", file=sys.stderr)


def pytest_sessionstart(session) -> None:
    clean_fastdds_shm()


@pytest.fixture(autouse=True)
def no_process_left_running(request: pytest.FixtureRequest,
                            monkeypatch: pytest.MonkeyPatch):
    """After each test, the processes it started (and theirs) must have ended: a node left
    running keeps publishing on a domain a later test reuses, and takes CPU from it. Any
    still there 5 s after the test are killed (they are this test's own, found by the mark)
    and listed at the end of the run."""
    mark = f"{os.getpid()}-{next(_marks)}"
    monkeypatch.setenv(TEST_MARK_ENV, mark)
    yield
    if not sys.platform.startswith("linux"):
        return
    deadline = time.monotonic() + 5.0
    while (pids := _marked_processes(mark)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
        LEFT_RUNNING.append(f"{request.node.nodeid}: pid {pid}: {cmd[:160]}")
    if "system" in Path(str(request.node.fspath)).parts:  # tests that start (and kill) nodes
        clean_fastdds_shm()


TIERS = ("unit", "ros", "system")


def pytest_collection_modifyitems(config, items) -> None:
    """Each test is marked with its tier, the folder it is in (test/unit, test/ros,
    test/system): `-m unit` runs the unit tier."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        tier = next((t for t in TIERS if t in parts[-2:-1]), None)
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))


def pytest_terminal_summary(terminalreporter) -> None:
    if LEFT_RUNNING:
        terminalreporter.section("processes left running by tests (killed)")
        for line in LEFT_RUNNING:
            terminalreporter.write_line(line)


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
            from wam_ros.testing.checkpoints import make_tiny_checkpoint

            out = tmp_path_factory.mktemp(f"ckpt_{key}")
            made[key] = make_tiny_checkpoint(out, robot, action_space=action_space)
        return made[key]

    return make
