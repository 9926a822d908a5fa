"""Policy and decoder nodes in-process: observations in, raw and decoded chunks out, reset
service, start-up errors that name the problem."""

from __future__ import annotations

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import TimeReference  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from wam_ros.core.config import ConfigError  # noqa: E402
from wam_ros.core.robot import RobotSpec  # noqa: E402
from wam_ros.core.types import Observation  # noqa: E402
from wam_ros.model.checkpoint import read_checkpoint_config  # noqa: E402
from wam_ros.nodes import conversions, topics  # noqa: E402
from wam_ros.nodes.common import PoolExecutor  # noqa: E402
from wam_ros.nodes.decoder_node import DecoderNode  # noqa: E402
from wam_ros.nodes.policy_node import PolicyNode  # noqa: E402
from wam_ros.testing.process import spin_until  # noqa: E402
from wam_ros_msgs.msg import ActionChunk  # noqa: E402
from wam_ros_msgs.msg import Observation as ObservationMsg  # noqa: E402


def test_observations_become_raw_and_decoded_chunks(rclpy_context, tiny_checkpoint):
    spec = RobotSpec.load("agibot_g1")
    ckpt = tiny_checkpoint("agibot_g1")
    params = [Parameter("robot", value=spec.name), Parameter("checkpoint", value=str(ckpt)),
              Parameter("scheduler", value="async")]
    policy = PolicyNode(context=rclpy_context, parameter_overrides=params)
    decoder = DecoderNode(context=rclpy_context, parameter_overrides=params[:2])
    probe = rclpy.create_node("probe", context=rclpy_context)
    executor = PoolExecutor(num_threads=4, context=rclpy_context)
    for n in (policy, decoder, probe):
        executor.add_node(n)
    raw: list[ActionChunk] = []
    joint: list[ActionChunk] = []
    probe.create_subscription(ActionChunk, topics.CHUNK_RAW, raw.append, topics.CHUNK_QOS)
    probe.create_subscription(ActionChunk, topics.CHUNK_JOINT, joint.append, topics.CHUNK_QOS)
    obs_pub = probe.create_publisher(ObservationMsg, topics.OBSERVATION, topics.OBSERVATION_QOS)
    reset = probe.create_client(Trigger, topics.RESET_SERVICE)
    cfg, _ = read_checkpoint_config(ckpt)
    h, w = cfg.image_size
    rng = np.random.default_rng(0)

    def publish_observation() -> None:
        now = probe.get_clock().now().nanoseconds * 1e-9
        obs = Observation(now, {c: rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
                                for c in spec.camera_names}, spec.home_vector())
        obs_pub.publish(conversions.observation_to_msg(obs, spec.action_layout))

    try:
        assert spin_until(executor, lambda: obs_pub.get_subscription_count() > 0, 10.0)
        for _ in range(40):
            publish_observation()
            spin_until(executor, lambda: False, 1 / 30)
            if len(joint) >= 3:
                break
        assert len(raw) >= 3 and len(joint) >= 3
        first = conversions.msg_to_chunk(joint[0])
        assert first.names == spec.action_layout and first.horizon == cfg.horizon
        assert np.all(np.isfinite(first.actions))
        assert raw[0].space == ActionChunk.SPACE_JOINT_DELTA
        # the decoded chunk is absolute and relative to the state the policy saw (home)
        raw0 = conversions.msg_to_chunk(raw[0])
        assert raw0.reference is not None
        assert joint[0].space == ActionChunk.SPACE_JOINT_ABSOLUTE
        assert [m.chunk_id for m in raw] == sorted(m.chunk_id for m in raw)
        assert all(m.inference_time > 0 and m.blocking_time >= m.inference_time * 0.5
                   for m in raw)
        # the smoother's splice reports teach the policy its hand-off latency
        applied = probe.create_publisher(TimeReference, topics.CHUNK_APPLIED,
                                         topics.APPLIED_QOS)
        assert spin_until(executor, lambda: applied.get_subscription_count() > 0, 5.0)
        assert policy.runner.expected_handoff == 0.0
        last = raw[-1].header.stamp
        spliced = conversions.to_sec(last) + raw[-1].blocking_time + 1.0
        applied.publish(TimeReference(header=Header(stamp=conversions.to_time(spliced)),
                                      time_ref=last, source="test"))
        assert spin_until(executor, lambda: policy.runner.expected_handoff > 0.0, 5.0)
        assert 0.0 < policy.runner.stats()["expected_handoff_ms"] < 2000.0
        assert reset.wait_for_service(timeout_sec=5.0)
        episode = policy.runner.episode
        future = reset.call_async(Trigger.Request())
        assert spin_until(executor, future.done, 10.0) and future.result().success
        assert policy.runner.episode == episode + 1
    finally:
        executor.shutdown()
        for n in (policy, decoder, probe):
            n.destroy_node()


def test_refused_observations_reach_diagnostics_without_any_chunk(rclpy_context,
                                                                  tiny_checkpoint):
    """Observations older than max_observation_age_s are refused: no chunk goes out, and the
    refusal count still reaches /diagnostics (the counters refresh on a timer, not with each
    published chunk)."""
    spec = RobotSpec.load("agibot_g1")
    ckpt = tiny_checkpoint("agibot_g1")
    policy = PolicyNode(context=rclpy_context, parameter_overrides=[
        Parameter("robot", value=spec.name), Parameter("checkpoint", value=str(ckpt)),
        Parameter("max_observation_age_s", value=0.05)])
    probe = rclpy.create_node("probe", context=rclpy_context)
    executor = PoolExecutor(num_threads=4, context=rclpy_context)
    for n in (policy, probe):
        executor.add_node(n)
    raw: list[ActionChunk] = []
    stale: list[int] = []

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == "wam_ros/policy":
                stale.extend(int(kv.value) for kv in status.values
                             if kv.key == "refused.observation_stale")

    probe.create_subscription(ActionChunk, topics.CHUNK_RAW, raw.append, topics.CHUNK_QOS)
    probe.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, on_diagnostics, 10)
    obs_pub = probe.create_publisher(ObservationMsg, topics.OBSERVATION, topics.OBSERVATION_QOS)
    h, w = read_checkpoint_config(ckpt)[0].image_size
    try:
        assert spin_until(executor, lambda: obs_pub.get_subscription_count() > 0, 10.0)
        for _ in range(10):
            old = probe.get_clock().now().nanoseconds * 1e-9 - 1.0  # a second old
            obs = Observation(old, {c: np.zeros((h, w, 3), np.uint8)
                                    for c in spec.camera_names}, spec.home_vector())
            obs_pub.publish(conversions.observation_to_msg(obs, spec.action_layout))
            spin_until(executor, lambda: False, 0.05)
        assert spin_until(executor, lambda: bool(stale) and stale[-1] > 0, 5.0)
        assert not raw
    finally:
        executor.shutdown()
        for n in (policy, probe):
            n.destroy_node()


def test_unknown_backend_and_missing_checkpoint_fail_at_start(rclpy_context, tiny_checkpoint,
                                                            tmp_path):
    ckpt = str(tiny_checkpoint("agibot_g1"))
    with pytest.raises(ConfigError, match="backend: got 'tensorflow'; allowed: torch"):
        PolicyNode(context=rclpy_context, parameter_overrides=[
            Parameter("robot", value="agibot_g1"), Parameter("checkpoint", value=ckpt),
            Parameter("backend", value="tensorflow")])
    with pytest.raises(ConfigError, match="has no config.yaml"):
        PolicyNode(context=rclpy_context, parameter_overrides=[
            Parameter("robot", value="agibot_g1"), Parameter("checkpoint", value=str(tmp_path))])
    with pytest.raises(ConfigError, match="trained for robot 'agibot_g1'"):
        PolicyNode(context=rclpy_context, parameter_overrides=[
            Parameter("robot", value="cobot_magic"), Parameter("checkpoint", value=ckpt)])


def test_an_observation_during_shutdown_is_dropped_not_raised(rclpy_context, tiny_checkpoint):
    """A tick (an observation's callback) that read the runner and the worker just before
    cleanup or shutdown unloaded the model on another thread (seen once in the lifecycle
    test, as a RuntimeError out of the callback): the job is dropped with the model."""
    spec = RobotSpec.load("cobot_magic")
    params = [Parameter("robot", value=spec.name),
              Parameter("checkpoint", value=str(tiny_checkpoint("cobot_magic"))),
              Parameter("scheduler", value="sync")]
    policy = PolicyNode(context=rclpy_context, parameter_overrides=params)  # autostart
    try:
        h, w = policy.meta.image_size
        runner = policy.runner
        now = policy.get_clock().now().nanoseconds * 1e-9
        runner.on_observation(Observation(
            now, {c: np.zeros((h, w, 3), np.uint8) for c in policy.meta.camera_names},
            spec.home_vector()), now)
        jobs = []
        poll = runner.poll

        def poll_then_unload(t):  # the transition lands between the tick's poll and submit
            jobs.append(poll(t))
            policy._unload()
            return jobs[-1]

        runner.poll = poll_then_unload
        policy.tick()
        assert jobs and jobs[0] is not None  # there was a job to submit
        assert policy.runner is None and policy.worker is None
    finally:
        policy.destroy_node()


def test_a_realtime_control_thread_loads_and_warms_up_the_model_at_normal_priority(
        rclpy_context, tiny_checkpoint, monkeypatch):
    """Under the launch files' realtime_priority the thread that configures the policy (its
    constructor with autostart, or a lifecycle service callback) is SCHED_FIFO: loading and
    warming up the model (minutes for a TensorRT build) runs at normal priority instead, and
    the thread is back at its real-time priority afterwards. Runs in a thread of its own."""
    import threading

    from wam_ros.runtime.threads import realtime_priority, set_realtime

    original = PolicyNode._warm_up
    during: list[int] = []

    def warm_up(self):
        during.append(realtime_priority())
        return original(self)

    monkeypatch.setattr(PolicyNode, "_warm_up", warm_up)
    out: dict[str, object] = {}

    def control() -> None:
        out["why"] = set_realtime(5)
        if out["why"]:
            return
        node = PolicyNode(context=rclpy_context, parameter_overrides=[
            Parameter("robot", value="agibot_g1"),
            Parameter("checkpoint", value=str(tiny_checkpoint("agibot_g1")))])
        out["after"] = realtime_priority()
        out["active"] = node.runner is not None
        # the inference worker waits and hands over at the control path's priority (it runs
        # the model lowered: runtime.threads.off_realtime)
        out["worker"] = node.worker.submit(realtime_priority).result(10)
        node.destroy_node()

    t = threading.Thread(target=control)
    t.start()
    t.join(120)
    if out.get("why"):
        pytest.skip(f"no real-time scheduling here: {out['why']}")
    assert out["active"] and during == [0] and out["after"] == 5 and out["worker"] == 5
