"""Policy node: newest observation -> WAM inference (worker thread) -> wam_ros_msgs/ActionChunk.

Scheduling lives in runtime.chunk_runner.ChunkRunner and runtime.scheduler; this node feeds it
observations and control ticks and runs the jobs it hands out on a worker thread, so inference
never blocks an executor callback.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from std_srvs.srv import Trigger

from wam_ros.core.config import ConfigError
from wam_ros.core.robot import RobotSpec
from wam_ros.core.settings import PolicySettings
from wam_ros.core.types import Observation
from wam_ros.nodes import conversions, topics
from wam_ros.nodes.common import run_nodes, stamp_sec
from wam_ros.nodes.diagnostics import Diagnostics
from wam_ros.nodes.params import declare_settings
from wam_ros.paths import resolve_checkpoint
from wam_ros.runtime.chunk_runner import ChunkRunner, Job, JobResult
from wam_ros.runtime.scheduler import SchedulerConfig, make_scheduler
from wam_ros_msgs.msg import ActionChunk
from wam_ros_msgs.msg import Observation as ObservationMsg

TICK_HZ = 100.0  # scheduler decisions; cheap, and finer ticks mean less added latency


class PolicyNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("wam_policy", **kwargs)
        s = self.settings = declare_settings(self, PolicySettings)
        self.robot = RobotSpec.load(s.robot)
        from wam_ros.runtime import load_policy  # torch: import only when a policy is built

        checkpoint = resolve_checkpoint(s.checkpoint, self.robot.name)
        try:
            self.policy = load_policy(checkpoint, backend=s.backend, memory=s.memory,
                                      mode=s.mode, flow_steps=s.flow_steps, device=s.device)
        except (ValueError, FileNotFoundError, ImportError, RuntimeError) as exc:
            # unknown names, a checkpoint without the backend's export, a backend that is not
            # installed here: one line for the operator instead of a traceback
            raise ConfigError(f"policy: {exc}") from exc
        meta = self.policy.meta
        if tuple(meta.action_names) != tuple(self.robot.action_layout):
            raise ConfigError(f"checkpoint {checkpoint} was trained for robot {meta.robot!r} "
                              f"with actions {list(meta.action_names)}; robot {self.robot.name}"
                              f" has {list(self.robot.action_layout)}")
        self.meta = meta
        latency = self._warm_up()
        scheduler = make_scheduler(s.scheduler, SchedulerConfig(
            margin_s=s.latency_margin_s, execute_actions=s.execute_steps,
            speculative_fraction=s.sai_s_mid))
        self.runner = ChunkRunner(self.policy, scheduler, s_mid=s.sai_s_mid,
                                  max_observation_age=s.max_observation_age_s,
                                  initial_latency=latency)
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wam_inference")
        self._published = 0
        self.diag = Diagnostics(self, "policy")
        self.pub = self.create_publisher(ActionChunk, topics.CHUNK_RAW, topics.CHUNK_QOS)
        # Observations, ticks and the reset service each get their own group: the executor
        # never waits on one for another (inference itself is on the worker thread).
        self.create_subscription(ObservationMsg, topics.OBSERVATION, self.on_observation,
                                 topics.OBSERVATION_QOS,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(1.0 / TICK_HZ, self.tick,
                          callback_group=MutuallyExclusiveCallbackGroup())
        self.create_service(Trigger, topics.RESET_SERVICE, self.on_reset,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(
            f"{checkpoint.name}: backend {s.backend}, memory {s.memory}, mode {s.mode}, "
            f"scheduler {s.scheduler}, {meta.horizon} actions x {meta.dt * 1e3:.0f} ms; "
            f"warm inference {latency * 1e3:.0f} ms")

    def _warm_up(self) -> float:
        """One inference on a blank observation: loads kernels and measures the latency the
        schedulers start from; memory is cleared afterwards."""
        h, w = self.meta.image_size
        obs = Observation(0.0, {c: np.zeros((h, w, 3), np.uint8) for c in self.meta.camera_names},
                          self.robot.home_vector(), task=self.settings.task)
        chunk = self.policy.infer(obs)
        self.policy.reset()
        return max(chunk.inference_time, 1e-3)

    def on_observation(self, msg: ObservationMsg) -> None:
        try:
            obs = conversions.msg_to_observation(msg, self.robot.action_layout,
                                                 task=self.settings.task)
        except (ValueError, KeyError) as exc:
            self.diag.refuse("bad_observation", str(exc))
            return
        self.runner.on_observation(obs, stamp_sec(self))

    def tick(self) -> None:
        job = self.runner.poll(stamp_sec(self))
        if job is not None:
            self.worker.submit(self._run, job)

    def _run(self, job: Job) -> None:
        result: JobResult = self.runner.execute(job)
        if result.error:
            self.diag.refuse("inference_failed", result.error)
        chunk = self.runner.finish(result, stamp_sec(self))
        if chunk is None:
            return
        self.pub.publish(conversions.chunk_to_msg(chunk))
        self._published += 1
        self.diag.set_counters({k: v for k, v in self.runner.stats().items()
                                if not isinstance(v, str)})
        self.diag.set_value("published", self._published)

    def on_reset(self, request: Trigger.Request, response: Trigger.Response
                 ) -> Trigger.Response:
        self.runner.reset()
        response.success = True
        response.message = f"episode {self.runner.episode}"
        self.get_logger().info(f"reset: {response.message}")
        return response

    def close(self) -> None:
        self.worker.shutdown(wait=True, cancel_futures=True)


def main(args: list[str] | None = None) -> int:
    return run_nodes([PolicyNode], args)


if __name__ == "__main__":
    sys.exit(main())
