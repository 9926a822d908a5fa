"""The README's interface table and docs/interfaces.md are what the nodes declare: regenerated
from the nodes themselves and compared, so a new topic, service or parameter cannot go
undocumented."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("rclpy")

from conftest import next_domain_id

from wam_ros.nodes.interfaces import (
    README_BEGIN,
    README_END,
    full_markdown,
    graph_interfaces,
    readme_table,
)

REPO = Path(__file__).resolve().parents[3]
REGENERATE = "run `wam-ros interfaces --readme README.md --doc docs/interfaces.md`"


@pytest.fixture(scope="module")
def nodes():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROS_DOMAIN_ID", str(next_domain_id()))
        return graph_interfaces("cobot_magic")


def test_readme_interface_table_is_current(nodes):
    text = (REPO / "README.md").read_text()
    start, end = text.index(README_BEGIN), text.index(README_END) + len(README_END)
    assert text[start:end] == readme_table(nodes), REGENERATE


def test_interfaces_doc_is_current(nodes):
    assert (REPO / "docs" / "interfaces.md").read_text() == full_markdown(
        nodes, "cobot_magic") + "\n", REGENERATE


def test_every_parameter_is_described_and_every_graph_topic_listed(nodes):
    by_name = {n.name: n for n in nodes}
    assert set(by_name) == {"wam_observation", "wam_policy", "wam_decoder", "wam_smoother"}
    for n in nodes:
        for p in n.parameters:
            assert p.description, f"{n.name}.{p.name} has no description"
    assert by_name["wam_policy"].lifecycle and by_name["wam_smoother"].lifecycle
    assert not by_name["wam_observation"].lifecycle
    published = {t for n in nodes for t, _, _ in n.publishes}
    subscribed = {t for n in nodes for t, _, _ in n.subscribes}
    # the graph is wired: every chunk and observation topic has both ends
    for topic in ("/wam/observation", "/wam/chunk/raw", "/wam/chunk/joint",
                  "/wam/policy/input", "/wam/chunk/applied"):
        assert topic in published and topic in subscribed, topic
    live = {p.name for p in by_name["wam_smoother"].parameters if not p.read_only}
    assert {"limits.velocity_scale", "limits.acceleration_scale"} <= live
