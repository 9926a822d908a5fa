"""Parameters robot teams can read and trust, through the parameter services `ros2 param`
uses: every parameter of every graph node has a description (and its range or choices where
validation has one); start-up-only parameters refuse a set with a reason; the live ones
(speed scaling, sai_s_mid, latency_margin_s, task) take effect at once, a bad value refused."""

from __future__ import annotations

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402

from wam_ros.nodes.decoder_node import DecoderNode  # noqa: E402
from wam_ros.nodes.observation_node import ObservationNode  # noqa: E402
from wam_ros.nodes.policy_node import PolicyNode  # noqa: E402
from wam_ros.nodes.smoother_node import SmootherNode  # noqa: E402
from wam_ros.testing.process import spin_until  # noqa: E402


@pytest.fixture
def graph(rclpy_context, tiny_checkpoint):
    ckpt = str(tiny_checkpoint("agibot_g1"))
    common = [Parameter("robot", value="agibot_g1")]
    nodes = {
        "wam_observation": ObservationNode(context=rclpy_context, parameter_overrides=common),
        "wam_policy": PolicyNode(context=rclpy_context, parameter_overrides=[
            *common, Parameter("checkpoint", value=ckpt), Parameter("scheduler", value="sai")]),
        "wam_decoder": DecoderNode(context=rclpy_context, parameter_overrides=[
            *common, Parameter("checkpoint", value=ckpt)]),
        "wam_smoother": SmootherNode(context=rclpy_context, parameter_overrides=common),
    }
    client = rclpy.create_node("param_client", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    for n in (*nodes.values(), client):
        executor.add_node(n)
    try:
        yield nodes, client, executor
    finally:
        executor.shutdown()
        for n in (*nodes.values(), client):
            close = getattr(n, "close", None)
            if close is not None:
                close()
            n.destroy_node()


def _call(executor, future):
    assert spin_until(executor, future.done, 10.0)
    return future.result()


def test_every_parameter_is_described(graph):
    nodes, client, executor = graph
    for name in nodes:
        params = AsyncParameterClient(client, name)
        assert params.wait_for_services(timeout_sec=10.0), name
        listed = _call(executor, params.list_parameters()).result.names
        ours = [p for p in listed if p not in ("use_sim_time", "start_type_description_service")]
        assert len(ours) >= 3, (name, listed)
        described = _call(executor, params.describe_parameters(ours)).descriptors
        for d in described:
            assert d.description.strip(), f"{name}: {d.name} has no description"
            assert d.additional_constraints.strip(), f"{name}: {d.name}"
    policy = {d.name: d for d in _call(executor, AsyncParameterClient(
        client, "wam_policy").describe_parameters(["scheduler", "sai_s_mid"])).descriptors}
    assert "one of: sync, async, sai" in policy["scheduler"].additional_constraints
    assert policy["scheduler"].read_only and not policy["sai_s_mid"].read_only
    assert policy["sai_s_mid"].floating_point_range[0].to_value == pytest.approx(0.95)


def test_live_parameters_change_at_once_and_start_up_ones_refuse(graph):
    nodes, client, executor = graph
    smoother = AsyncParameterClient(client, "wam_smoother")
    policy = AsyncParameterClient(client, "wam_policy")
    assert smoother.wait_for_services(10.0) and policy.wait_for_services(10.0)

    def set_(params, name, value):
        return _call(executor, params.set_parameters([Parameter(name, value=value)])).results[0]

    vmax = nodes["wam_smoother"].robot.limits_array("velocity")
    assert set_(smoother, "limits.velocity_scale", 0.5).successful
    np.testing.assert_allclose(nodes["wam_smoother"].pipeline.enforcer.velocity, vmax * 0.5)
    refused = set_(smoother, "limits.velocity_scale", 2.0)
    assert not refused.successful and "(0, 1]" in refused.reason
    np.testing.assert_allclose(nodes["wam_smoother"].pipeline.enforcer.velocity, vmax * 0.5)
    refused = set_(smoother, "safety.deviation_threshold", 1.0)
    assert not refused.successful and "read-only" in refused.reason.lower()

    assert set_(policy, "sai_s_mid", 0.7).successful
    assert nodes["wam_policy"].runner.s_mid == pytest.approx(0.7)
    assert set_(policy, "latency_margin_s", 0.2).successful
    assert nodes["wam_policy"].runner.scheduler.config.margin_s == pytest.approx(0.2)
    assert set_(policy, "task", "stack the cubes").successful
    assert nodes["wam_policy"].settings.task == "stack the cubes"
    assert not set_(policy, "sai_s_mid", 1.5).successful
    assert nodes["wam_policy"].runner.s_mid == pytest.approx(0.7)
    refused = set_(policy, "scheduler", "sync")
    assert not refused.successful and "read-only" in refused.reason.lower()
    assert nodes["wam_policy"].settings.scheduler == "sai"
    # after a new episode the live values stay
    nodes["wam_policy"].runner.reset(0.0)
    assert nodes["wam_policy"].runner.s_mid == pytest.approx(0.7)
