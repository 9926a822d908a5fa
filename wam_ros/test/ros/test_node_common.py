"""Executor choice for the graph's nodes (nodes/common.py)."""

from __future__ import annotations

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
