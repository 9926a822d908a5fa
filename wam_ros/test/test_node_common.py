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
