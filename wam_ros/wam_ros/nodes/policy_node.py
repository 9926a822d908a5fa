"""Policy node: newest observation -> WAM inference (worker thread) -> wam_ros_msgs/ActionChunk.

Scheduling lives in runtime.chunk_runner.ChunkRunner and runtime.scheduler; this node feeds it
observations and control ticks and runs the jobs it hands out on a worker thread, so inference
never blocks an executor callback. The scheduler is asked for a decision the moment something
changes (an observation arrives, a job finishes) and on a timer for time-based decisions; the
inference threads run at a raised nice value so the control path preempts them.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import TimeReference
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from wam_ros.core.config import ConfigError
from wam_ros.core.health import WARN
from wam_ros.core.inputs import ClockJump
from wam_ros.core.robot import RobotSpec
from wam_ros.core.settings import PolicySettings
from wam_ros.core.types import Chunk, InputContract, Observation
from wam_ros.nodes import conversions, topics
from wam_ros.nodes.common import OneShot, run_nodes, stamp_sec
from wam_ros.nodes.diagnostics import Diagnostics
from wam_ros.nodes.params import declare_settings
from wam_ros.paths import resolve_checkpoint
from wam_ros.runtime.chunk_runner import ChunkRunner, Job, JobResult
from wam_ros.runtime.threads import (
    lower_priority,
    lowered_new_threads,
    off_realtime,
    set_realtime,
)
from wam_ros_msgs.msg import ActionChunk
from wam_ros_msgs.msg import Observation as ObservationMsg

TICK_HZ = 100.0  # time-based scheduler decisions (events trigger the others at once)
REFUSAL_LOG_PERIOD_S = 5.0  # s between two reports of the scheduler's refusals in the log


class PolicyNode(LifecycleNode):
    """A managed node: configure loads and warms up the model (minutes with TensorRT),
    activate starts planning and publishing chunks, deactivate stops both (a plan in flight
    is dropped), cleanup releases the model. With `autostart` (the default, and what the launch
    files give) it configures and activates itself; a model that fails to load is then a
    start-up error."""

    def __init__(self, **kwargs) -> None:
        super().__init__("wam_policy", **kwargs)
        s = self.settings = declare_settings(
            self, PolicySettings, live=self._apply_live,
            live_fields=("sai_s_mid", "latency_margin_s", "task"))
        self.robot = RobotSpec.load(s.robot)
        self.policy = None
        self.runner: ChunkRunner | None = None
        self.worker: ThreadPoolExecutor | None = None
        self.contract: InputContract | None = None
        self.meta = None
        self.inference_threads = 0
        self._active = False
        self._configure_error = ""
        self._published = 0
        self._refusals_logged: dict[str, int] = {}  # runner refusal counts already logged
        self.diag = Diagnostics(self, "policy")
        self.observation_input = self.diag.add_input("observations",
                                                     dead_after_s=s.input_dead_after_s)
        self.diag.add_conditions(self._conditions)
        self._refusals_seen: dict[str, int] = {}  # runner refusals already in diagnostics
        self.clock_jump = ClockJump()
        # publishes only while active
        self.pub = self.create_lifecycle_publisher(ActionChunk, topics.CHUNK_RAW,
                                                   topics.CHUNK_QOS)
        # what the model takes, latched: the observation node sizes its output from it
        self.contract_pub = self.create_publisher(String, topics.POLICY_INPUT,
                                                  topics.CONTRACT_QOS)
        # composed bringup: consumers in this process get each Chunk directly
        self.local_sinks: list[Callable[[Chunk], None]] = []
        # Observations, ticks and the reset service each get their own group: the executor
        # never waits on one for another (inference itself is on the worker thread).
        self.observation_sub = self.create_subscription(
            ObservationMsg, topics.OBSERVATION, self.on_observation, topics.OBSERVATION_QOS,
            callback_group=MutuallyExclusiveCallbackGroup())
        # The smoother reports when each chunk started executing: the hand-off latency the
        # schedulers plan ahead for (runtime/chunk_runner.py).
        self.create_subscription(TimeReference, topics.CHUNK_APPLIED, self.on_chunk_applied,
                                 topics.APPLIED_QOS,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        # Finished chunks that consumers in this process take (composed: the decoder and the
        # smoother run in the hand-off) go out from an executor thread at normal priority,
        # not from the (niced) inference worker: the worker only queues them and wakes the
        # executor. Over DDS alone the worker publishes them itself (_run).
        self._ready: deque[Chunk] = deque()
        self._ready_signal = OneShot(self, self._publish_ready, MutuallyExclusiveCallbackGroup())
        self.create_timer(1.0 / TICK_HZ, self.tick,
                          callback_group=MutuallyExclusiveCallbackGroup())
        services = MutuallyExclusiveCallbackGroup()
        # off the tick path: counters refresh even while no chunk goes out
        self.create_timer(1.0, self._diagnostics, callback_group=services)
        self.create_timer(REFUSAL_LOG_PERIOD_S, self._log_refusals, callback_group=services)
        self.create_service(Trigger, topics.RESET_SERVICE, self.on_reset,
                            callback_group=services)
        self.create_service(SetBool, topics.RUN_SERVICE, self.on_run, callback_group=services)
        if s.autostart:
            if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                raise ConfigError(self._configure_error or "policy: configure failed")
            self.trigger_activate()
        else:
            self.get_logger().info("unconfigured (autostart false): ros2 lifecycle set "
                                   f"{self.get_fully_qualified_name()} configure, then activate")

    # ---- lifecycle ------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            # loading (minutes for a TensorRT build) must not hold a core real-time: this is a
            # control-path thread when the graph runs with realtime_priority
            with off_realtime() as control_priority:
                self._load(control_priority)
        except ConfigError as exc:
            self._configure_error = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        assert self.runner is not None
        self.runner.reset()  # a new episode: memory cleared, planning
        self._active = True
        self.get_logger().info("active: planning")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        if self.runner is not None:
            self.runner.pause()  # a plan in flight is dropped when it finishes
        self.get_logger().info("inactive: not planning")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unload()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._unload()
        return TransitionCallbackReturn.SUCCESS

    def _conditions(self, now: float) -> list[tuple[int, str]]:
        if self.runner is None:
            why = f": {self._configure_error}" if self._configure_error else ""
            return [(WARN, f"unconfigured (lifecycle): no model loaded{why}")]
        if not self._active:
            return [(WARN, "inactive (lifecycle): not planning")]
        return []

    def _load(self, control_priority: int = 0) -> None:
        """Load the model, warm it up, announce its input, build the runner (configure).
        control_priority: the SCHED_FIFO priority of the node's control path (0: normal)."""
        s = self.settings
        from wam_ros.runtime import load_policy  # torch: import only when a policy is built

        checkpoint = (Path() if s.backend == "remote"
                      else resolve_checkpoint(s.checkpoint, self.robot.name))
        # the backend's worker pools start while loading or during the first inference
        with lowered_new_threads(s.inference_nice) as pool_threads:
            try:
                if s.backend == "remote":  # a policy server: the checkpoint stays there
                    from wam_ros.runtime.remote import remote_policy_from_settings

                    checkpoint = Path(s.server_url)
                    self.policy = remote_policy_from_settings(s, self.robot,
                                                              self.get_logger().warning)
                else:
                    self.policy = load_policy(checkpoint, backend=s.backend, memory=s.memory,
                                              mode=s.mode, flow_steps=s.flow_steps,
                                              device=s.device,
                                              noise_scale=s.noise_scale if s.noise_scale >= 0
                                              else None, threads=s.inference_threads)
            except (ValueError, FileNotFoundError, ImportError, RuntimeError) as exc:
                # unknown names, a checkpoint without the backend's export, a backend that is
                # not installed here: one line for the operator instead of a traceback
                raise ConfigError(f"policy: {exc}") from exc
            meta = self.policy.meta
            if tuple(meta.action_names) != tuple(self.robot.action_layout):
                raise ConfigError(
                    f"checkpoint {checkpoint} was trained for robot {meta.robot!r} with actions "
                    f"{list(meta.action_names)}; robot {self.robot.name} has "
                    f"{list(self.robot.action_layout)}")
            self.meta = meta
            latency = self._warm_up()
        runner = ChunkRunner.from_settings(self.policy, s, latency)
        runner.pause()  # until activated
        # Under a real-time control path the worker waits, starts a job and hands its chunk
        # over at the control path's priority (no niced wake-up behind the cameras' work) and
        # only runs the model lowered (_run); otherwise it is lowered all along.
        self.worker = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="wam_inference",
            initializer=set_realtime if control_priority else lower_priority,
            initargs=(control_priority,) if control_priority else (s.inference_nice,))
        self.inference_threads = len(pool_threads) + 1
        h, w = meta.image_size
        self.contract = InputContract(tuple(meta.camera_names), int(h), int(w))
        self.contract_pub.publish(String(data=self.contract.to_json()))
        self.runner = runner
        self._configure_error = ""
        self.get_logger().info(
            f"{checkpoint.name}: backend {s.backend}, memory {s.memory}, mode {s.mode}, "
            f"scheduler {s.scheduler}, {meta.horizon} actions x {meta.dt * 1e3:.0f} ms; "
            f"warm inference {latency * 1e3:.0f} ms; {self.inference_threads} inference "
            f"threads at nice {s.inference_nice}"
            + (f" (hand-over at SCHED_FIFO {control_priority})" if control_priority else ""))

    def _unload(self) -> None:
        """Release the model (cleanup); the node stays up, unconfigured."""
        self.runner = None
        if self.worker is not None:
            self.worker.shutdown(wait=True, cancel_futures=True)
            self.worker = None
        self.policy = None

    def _apply_live(self, settings: PolicySettings) -> None:
        """Parameters changed while running: the instruction, the schedulers' margin, sai's
        speculated share (the next plans use them)."""
        self.settings = settings
        if self.runner is not None:
            self.runner.reconfigure(settings.latency_margin_s, settings.sai_s_mid)
        self.get_logger().info(f"live parameters: sai_s_mid {settings.sai_s_mid}, "
                               f"latency_margin_s {settings.latency_margin_s}, "
                               f"task {settings.task!r}")

    def _warm_up(self) -> float:
        """One inference on a blank observation: loads kernels and measures the latency the
        schedulers start from; memory is cleared afterwards."""
        h, w = self.meta.image_size
        obs = Observation(0.0, {c: np.zeros((h, w, 3), np.uint8) for c in self.meta.camera_names},
                          self.robot.home_vector(), task=self.settings.task)
        try:
            chunk = self.policy.infer(obs)
        except Exception as exc:
            if self.settings.backend != "remote":
                raise
            # the server may come up later: the node stays up, the arm holds until it does
            self.get_logger().warning(f"warm-up inference failed: {exc}")
            self.policy.reset()
            return self.settings.latency_margin_s + 0.1
        self.policy.reset()
        return max(chunk.inference_time, 1e-3)

    def on_observation(self, msg: ObservationMsg) -> None:
        try:
            obs = conversions.msg_to_observation(msg, self.robot.action_layout,
                                                 task=self.settings.task)
        except (ValueError, KeyError) as exc:
            self.diag.refuse("bad_observation", str(exc))
            return
        self.accept_observation(obs)

    def _now(self) -> float:
        now = stamp_sec(self)
        if self.clock_jump.update(now):
            # every stamp the runner holds is of the old clock: start a new episode on the new
            self.get_logger().warning("the clock jumped back: new episode, memory cleared")
            if self.runner is not None:
                self.runner.reset(now)
            self.diag.health.reset_clock(now)
        return now

    def accept_observation(self, obs: Observation) -> None:
        """A synchronised observation (from the topic, or in-process in the composed form)."""
        if self.settings.task and not obs.task:
            obs = replace(obs, task=self.settings.task)
        now = self._now()
        runner = self.runner
        if runner is not None and runner.on_observation(obs, now):
            self.observation_input.good(now)
        self.tick()  # a fresh observation may be what the scheduler waits for

    def on_chunk_applied(self, msg: TimeReference) -> None:
        if self.runner is None:
            return
        self.runner.on_chunk_applied(conversions.to_sec(msg.time_ref),
                                     conversions.to_sec(msg.header.stamp))
        self.tick()  # sai: the speculation for the next chunk may start now

    def tick(self) -> None:
        runner, worker = self.runner, self.worker
        if not self._active or runner is None or worker is None:
            return
        job = runner.poll(self._now())
        if job is None:
            return
        try:
            worker.submit(self._run, job)
        except RuntimeError:
            # cleanup or shutdown (_unload: the runner first, then the worker) closed the
            # worker on another thread after this tick read it (an observation arriving during
            # the transition): the model is going, and the job with it
            if self.runner is runner:
                raise

    def _diagnostics(self) -> None:
        now = self._now()
        if self.runner is None:
            return
        self.diag.set_counters({k: v for k, v in self.runner.stats().items()
                                if not isinstance(v, str)})
        self.diag.set_value("published", self._published)
        remote_stats = getattr(self.policy, "stats", None)
        if callable(remote_stats):  # backend remote: connection and server faults
            self.diag.set_counters(remote_stats())
        # the runner's refusals since the last report make the observation input WARN
        for reason, count in list(self.runner.refusals.items()):
            new = count - self._refusals_seen.get(reason, 0)
            if new > 0 and reason != "inference_failed":  # that one is refused on its own
                self.observation_input.refuse(now, reason, f"{new} since the last report")
            self._refusals_seen[reason] = count

    def _log_refusals(self) -> None:
        """The runner's refusals (stale observations, ...), on /diagnostics as counters, in
        the log too: one line per reason that occurred since the last report."""
        if self.runner is None:
            return
        for reason, count in list(self.runner.refusals.items()):
            new = count - self._refusals_logged.get(reason, 0)
            if new > 0:
                self.get_logger().warning(
                    f"scheduler refused ({reason}): {new} since the last report")
                self._refusals_logged[reason] = count

    def _run(self, job: Job) -> None:
        runner = self.runner
        if runner is None:  # cleaned up meanwhile
            return
        with off_realtime(self.settings.inference_nice):
            result: JobResult = runner.execute(job)
        if result.error:
            self.diag.refuse("inference_failed", result.error)
        chunk = runner.finish(result, stamp_sec(self))
        if chunk is not None and self.local_sinks:
            self._ready.append(chunk)
            self._ready_signal.arm()
        elif chunk is not None:
            # only a publication, while this thread has the CPU anyway: waking the executor
            # for it cost a timer's and a thread's wake-up
            self._publish(chunk)
        # the next job (sai: the speculation for the next chunk) starts without a tick's wait
        self.tick()

    def _publish_ready(self) -> None:
        while self._ready:
            chunk = self._ready.popleft()
            for sink in self.local_sinks:
                sink(chunk)
            self._publish(chunk)

    def _publish(self, chunk: Chunk) -> None:
        self.pub.publish(conversions.chunk_to_msg(chunk))
        self._published += 1

    def on_reset(self, request: Trigger.Request, response: Trigger.Response
                 ) -> Trigger.Response:
        if self.runner is None:
            response.success, response.message = False, "not configured (lifecycle)"
            return response
        self.runner.reset(stamp_sec(self))
        response.success = True
        response.message = f"episode {self.runner.episode}"
        self.get_logger().info(f"reset: {response.message}")
        return response

    def on_run(self, request: SetBool.Request, response: SetBool.Response
               ) -> SetBool.Response:
        if self.runner is None:
            response.success, response.message = False, "not configured (lifecycle)"
            return response
        if request.data:
            self.runner.reset(stamp_sec(self))
            response.message = f"running episode {self.runner.episode}"
        else:
            self.runner.pause()
            response.message = "paused"
        response.success = True
        self.get_logger().info(f"run: {response.message}")
        return response

    def close(self) -> None:
        policy = self.policy
        self._unload()
        if hasattr(policy, "close"):
            policy.close()


def main(args: list[str] | None = None) -> int:
    return run_nodes([PolicyNode], args, executor="auto", fast_exit=True)


if __name__ == "__main__":
    sys.exit(main())
