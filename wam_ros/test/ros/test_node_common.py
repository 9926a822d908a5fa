"""Executor choice and process set-up for the graph's nodes (nodes/common.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("rclpy")

from wam_ros.core.config import ConfigError
from wam_ros.nodes.common import (
    EXECUTOR_ENV,
    events_executor_available,
    graph_executor,
    make_executor,
    run_nodes,
    spin,
)


def test_graph_executor_defaults_to_events_where_rclpy_has_it(monkeypatch) -> None:
    monkeypatch.delenv(EXECUTOR_ENV, raising=False)
    assert graph_executor() == ("events" if events_executor_available() else "multi_threaded")
    monkeypatch.setenv(EXECUTOR_ENV, "multi_threaded")
    assert graph_executor() == "multi_threaded"


def test_an_unknown_executor_is_a_configuration_error(monkeypatch, capsys) -> None:
    monkeypatch.setenv(EXECUTOR_ENV, "threads")
    with pytest.raises(ConfigError, match="allowed: events, multi_threaded"):
        graph_executor()
    # a node's main() says so in one line and exits 2, before creating any node
    made = []
    assert run_nodes([lambda: made.append(1)], ["test"], executor="auto") == 2
    assert not made
    assert "WAM_ROS_EXECUTOR='threads'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="allowed"):
        make_executor("threads")


def test_spin_ends_quietly_when_shutdown_breaks_the_wait_but_not_otherwise(monkeypatch) -> None:
    """A SIGINT shutdown that lands while the executor builds its wait set makes rcl fail
    ("context is not valid"): the spin ends. The same failure while rclpy runs is raised."""
    from wam_ros.nodes import common

    state = {"ok": True, "spins": 0}

    class ShutdownMidWait:
        def spin_once(self, timeout_sec: float) -> None:
            state["spins"] += 1
            if state["spins"] == 3:
                state["ok"] = False  # the signal handler shut the context down
                raise RuntimeError("failed to initialize wait set: the given context is not "
                                   "valid")

    monkeypatch.setattr(common.rclpy, "ok", lambda: state["ok"])
    spin(ShutdownMidWait())
    assert state["spins"] == 3

    class Broken:
        def spin_once(self, timeout_sec: float) -> None:
            raise RuntimeError("a callback failed")

    state["ok"] = True
    with pytest.raises(RuntimeError, match="a callback failed"):
        spin(Broken())


_FRAMES = """
import sys
from wam_ros.nodes.common import keep_freed_memory

def minor_faults():
    return int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[7])

if sys.argv[1] == "kept":
    assert keep_freed_memory()
for _ in range(5):
    frame = bytearray(921654)
start = minor_faults()
for _ in range(100):  # a raw 640x480 frame taken per message, and its copy
    frame = bytearray(921654)
    copy = bytes(frame)
    del frame, copy
print(minor_faults() - start)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc: Linux")
def test_node_processes_keep_freed_frame_buffers_instead_of_faulting_them_in_again():
    """What run_nodes does first: with glibc's adaptive defaults, freeing a frame-sized buffer
    at the heap top hands it back to the kernel and the next one faults its pages in again;
    kept, a hundred frames fault (almost) nothing in."""
    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", _FRAMES, mode], capture_output=True,
                             text=True, timeout=60, check=True)
        return int(out.stdout.strip().splitlines()[-1])

    pages = 921654 // 4096
    assert faults("default") > 50 * pages  # the pattern the node saw (this glibc)
    assert faults("kept") < 2 * pages


_UNPRIVILEGED = """
import os, resource, sys
from wam_ros.nodes.common import _realtime_from_env
import wam_ros.runtime.threads  # imported while the files are still readable

if os.geteuid() == 0:  # root may always: become nobody (no CAP_SYS_NICE, rtprio limit 0)
    os.setgid(65534)
    os.setuid(65534)
else:  # a user may lower their own limit; only CAP_SYS_NICE would still allow it
    resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))
print(repr(_realtime_from_env()))
print(os.sched_getscheduler(0))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SCHED_FIFO: Linux")
@pytest.mark.parametrize(("value", "says"), [
    ("40", "WAM_ROS_RT_PRIORITY=40 (launch argument realtime_priority) not applied: "
           "SCHED_FIFO 40 refused"),
    ("high", "WAM_ROS_RT_PRIORITY='high' ignored: expected a priority 1..99"),
    ("0", ""),
])
def test_a_node_without_the_rtprio_limit_says_how_to_grant_it_and_runs_normally(value, says):
    """The launch default asks for SCHED_FIFO 40: where the user may not (no rtprio limit, no
    CAP_SYS_NICE, as on a fresh machine) the node says so, how to grant it or turn it off, and
    runs at normal priority. A value that is no priority is named and ignored."""
    import os

    out = subprocess.run([sys.executable, "-c", _UNPRIVILEGED],
                         env={**os.environ, "WAM_ROS_RT_PRIORITY": value},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    message, policy = out.stdout.strip().splitlines()[-2:]
    assert says in message if says else message == repr(""), message
    if value == "40":
        assert "rtprio" in message and "realtime_priority:=0" in message
    assert int(policy) == os.SCHED_OTHER
