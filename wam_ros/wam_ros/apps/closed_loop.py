"""Closed-loop episodes through the real node graph: what `wam-ros demo`, `wam-ros eval` and the
CI episode test share.

The MuJoCo sim node (cameras, joint states, /clock, mock ros2_control controllers) and the node
graph run as separate processes on sim time, exactly as `sim.launch.py` starts them; a probe node
in this process drives episodes the way an operator would on the robot:

    pause the policy -> move home (smoother) -> reset the scene (new random seed) ->
    start a new policy episode -> watch the sim's task status until success or time-out

and records, per episode, success, completion time (sim seconds), and the latency of every plan:
camera stamp of its observation -> its first command (the smoother names that command after the
observation stamp, so the latency is exact, in sim time).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wam_ros.data.run_video import FilmWorker, RunVideo, overlay_lines
from wam_ros.sim.pace import PACE_FLOOR

# graph-paced simulation (sim.pace.GraphPace): the newest command may be this many control
# periods old (sim time) before the simulator slows down; the sim's /clock granularity and the
# transport take up to about 1.5 of them on an idle machine
COMMAND_AGE_PERIODS = 2.5
# sim seconds a move home may take before it is retried (a move can latch a stop of its own)
HOMING_LIMIT_S = 10.0
# a service request without an answer this long is sent again (ClosedLoop._call)
SERVICE_RETRY_S = 10.0
# episode videos: pixels per camera (the sim renders 640x480), every how many camera frames
# one is filmed (10 fps of sim time at 30 Hz cameras: the probe's CPU is the graph's too)
VIDEO_HEIGHT, VIDEO_EVERY = 160, 3
IMAGE_TYPE = "sensor_msgs/msg/Image"

# The simulator's default pace for closed-loop episodes (`wam-ros demo`, `wam-ros eval`): a
# stall of the node graph this long in wall time (a preempted process, a garbage collection, a
# virtual machine's steal time) may cost at most one control period of sim time. Graph pacing
# above reacts to stalls only after the fact, and hunts the pace at which they begin; the
# runs that chose this default: docs/recipes/default-checkpoints.md (G1's default).
GRAPH_STALL_S = 0.05
MAX_REAL_TIME_FACTOR = 0.5


def default_real_time_factor(control_rate_hz: float) -> float:
    """Sim seconds per wall second for a robot commanded at `control_rate_hz`: one control
    period per GRAPH_STALL_S of wall time, at most MAX_REAL_TIME_FACTOR (G1, 100 Hz: 0.2;
    CobotMagic, 50 Hz: 0.4)."""
    if not control_rate_hz > 0:
        raise ValueError(f"control_rate_hz: got {control_rate_hz}; allowed: > 0")
    return min(MAX_REAL_TIME_FACTOR, 1.0 / (control_rate_hz * GRAPH_STALL_S))


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    completion_s: float  # sim seconds from the start to success (the time-out if it failed)
    latencies_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    sim_s: float = 0.0
    phase: str = ""  # last task phase seen (where a failed episode got stuck)

    @property
    def real_time_factor(self) -> float:
        return self.sim_s / self.wall_s if self.wall_s > 0 else float("nan")


@dataclass
class Trace:
    """Commanded and measured joints and camera frames of one episode, for plots."""

    commanded: list[tuple[float, np.ndarray]] = field(default_factory=list)
    measured: list[tuple[float, np.ndarray]] = field(default_factory=list)
    frames: list[tuple[float, np.ndarray]] = field(default_factory=list)


def _film_frame(raw: bytes) -> np.ndarray:
    """A raw sensor_msgs/Image -> RGB VIDEO_HEIGHT pixels high (FilmWorker's thread)."""
    import cv2

    from wam_ros.core.image import message_to_rgb
    from wam_ros.data.cdr import deserialize

    rgb = message_to_rgb(deserialize(raw, IMAGE_TYPE))
    width = max(2, round(rgb.shape[1] * VIDEO_HEIGHT / rgb.shape[0]))
    return cv2.resize(rgb, (width, VIDEO_HEIGHT), interpolation=cv2.INTER_AREA)


class _SimStopwatch:
    """Sim seconds since it was made, from a reading of the episode's elapsed time that
    restarts at a scene reset (a status from before the reset may still be the newest)."""

    def __init__(self, elapsed: Callable[[], float]) -> None:
        self.elapsed = elapsed
        self.last = elapsed()
        self.total = 0.0

    def seconds(self) -> float:
        now = self.elapsed()
        self.total += max(0.0, now - self.last)  # a reset (backwards) adds nothing
        self.last = now
        return self.total


class ClosedLoop:
    """Sim node + node graph as processes, and the probe that runs episodes against them."""

    def __init__(self, workdir: Path, robot: str, task: str, checkpoint: Path, *,
                 scheduler: str = "async", memory: str = "kv", backend: str = "onnxruntime",
                 composed: bool = False, seed: int = 0, camera_size: tuple[int, int] = (0, 0),
                 real_time_factor: float = 1.0, max_command_age_s: float | None = None,
                 log: Callable[[str], None] = print, startup_timeout: float = 180.0,
                 policy_params: dict[str, object] | None = None, video: bool = False) -> None:
        """max_command_age_s: pace the simulator to the graph (sim.pace.GraphPace): None:
        COMMAND_AGE_PERIODS control periods, 0: a fixed pace. policy_params: extra policy
        node parameters (backend remote: server_url, server_mapping, ...). video: subscribe
        to every camera, so that `episode(video_path=...)` can film an episode."""
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image, JointState, TimeReference
        from std_msgs.msg import String
        from std_srvs.srv import SetBool, Trigger

        from wam_ros.bringup.graph import GraphArgs, build_sim_graph
        from wam_ros.core.robot import RobotSpec
        from wam_ros.nodes import conversions, topics
        from wam_ros.testing.process import NodeProcess, policy_params_file

        self.spec = RobotSpec.load(robot)
        self.task, self.log = task, log
        if max_command_age_s is None:
            max_command_age_s = COMMAND_AGE_PERIODS / self.spec.control_rate_hz
        # waits for sim-time motions (homing) are in wall seconds: slower sims need longer,
        # as slow as a graph-paced sim may get
        slowest = real_time_factor * (PACE_FLOOR if max_command_age_s > 0 else 1.0)
        self._slow = 1.0 / min(1.0, slowest) if real_time_factor > 0 else 1.0
        self._conversions = conversions
        workdir.mkdir(parents=True, exist_ok=True)
        sim_params: dict[str, object] = {"seed": seed, "real_time_factor": real_time_factor,
                                         "max_command_age_s": float(max_command_age_s)}
        if not camera_size[0]:
            # render at the model's input size: the pixels the expert episodes were rendered
            # with (the observation node's resize is then the identity), and cheapest
            from wam_ros.model.checkpoint import read_checkpoint_config

            h, w = read_checkpoint_config(checkpoint)[0].image_size
            camera_size = (w, h)
        sim_params.update(camera_width=camera_size[0], camera_height=camera_size[1])
        graph = build_sim_graph(GraphArgs(
            robot=robot, checkpoint=str(checkpoint), backend=backend, memory=memory,
            scheduler=scheduler, use_sim_time=True, composed=composed, task=task,
            params_file=policy_params_file(workdir / "policy_params.yaml", policy_params)),
            sim=sim_params)
        self.procs = [NodeProcess(s.command(), log_path=str(workdir / f"{s.name}.log"))
                      for s in graph]
        self.context = rclpy.context.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("wam_closed_loop", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.status: dict = {}
        self.measured: np.ndarray | None = None
        self.trace: Trace | None = None
        self._tags: list[tuple[float, float]] = []  # (plan's observation stamp, command time)

        def on_status(msg: String) -> None:
            self.status = json.loads(msg.data)

        def on_joints(msg: JointState) -> None:
            try:
                q = conversions.joint_positions(msg, self.spec.action_layout)
            except (KeyError, ValueError):
                return
            self.measured = q
            if self.trace is not None:
                self.trace.measured.append((conversions.to_sec(msg.header.stamp), q))

        def on_started(msg: TimeReference) -> None:
            self._tags.append((conversions.to_sec(msg.time_ref),
                               conversions.to_sec(msg.header.stamp)))

        def on_commanded(msg: JointState) -> None:
            t = conversions.to_sec(msg.header.stamp)
            if self.trace is not None:
                try:  # by name: a message that does not carry every joint is not plotted
                    q = conversions.joint_positions(msg, self.spec.action_layout)
                except (KeyError, ValueError):
                    return
                self.trace.commanded.append((t, q))

        def on_frame(msg: Image) -> None:
            if self.trace is None:
                return
            t = conversions.to_sec(msg.header.stamp)
            if not self.trace.frames or t - self.trace.frames[-1][0] >= 1.0:
                self.trace.frames.append((t, conversions.image_to_rgb(msg).copy()))

        # episode videos (episode(video_path=...)): every camera's newest frame kept as the
        # raw message (nothing deserialised here); every VIDEO_EVERY frames of the first
        # camera they go to a FilmWorker, whose thread decodes, composes and encodes: the
        # probe's callbacks stay as light as without a video
        self.video_enabled = video
        self._film: FilmWorker | None = None
        self._video_raw: dict[int, bytes] = {}
        self._video_label = ""
        self._video_count = 0

        def on_video_frame(index: int, raw: bytes) -> None:
            if self._film is None:
                return
            self._video_raw[index] = raw
            if index != 0:
                return
            self._video_count += 1
            if (self._video_count - 1) % VIDEO_EVERY or \
                    len(self._video_raw) < len(self.spec.cameras):
                return
            from wam_ros.data.cdr import header_stamp_ns

            latency = (self._tags[-1][1] - self._tags[-1][0]) * 1e3 if self._tags else None
            stamp = header_stamp_ns(raw, IMAGE_TYPE)
            self._film.submit([self._video_raw[i] for i in range(len(self.spec.cameras))],
                              overlay_lines(self._video_label, self._sim_elapsed(),
                                            str(self.status.get("phase", "")), latency),
                              None if stamp is None else stamp * 1e-9)

        if video:
            for i, cam in enumerate(self.spec.cameras):
                self.node.create_subscription(
                    Image, cam.topic, lambda raw, i=i: on_video_frame(i, raw), topics.FILM_QOS,
                    raw=True)
        self.node.create_subscription(String, topics.SIM_STATUS, on_status, 10)
        self.node.create_subscription(JointState, self.spec.joint_state_topic, on_joints,
                                      topics.SENSOR_QOS)
        self.node.create_subscription(JointState, topics.COMMANDED, on_commanded, 100)
        self.node.create_subscription(TimeReference, topics.PLAN_STARTED, on_started,
                                      topics.APPLIED_QOS)
        self.node.create_subscription(Image, self.spec.cameras[0].topic, on_frame,
                                      topics.SENSOR_QOS)
        self.sim_reset = self.node.create_client(Trigger, topics.SIM_RESET)
        self.policy_run = self.node.create_client(SetBool, topics.RUN_SERVICE)
        self.home = self.node.create_client(Trigger, topics.HOME_SERVICE)
        self.enable = self.node.create_client(Trigger, topics.ENABLE_SERVICE)
        self._Trigger, self._SetBool = Trigger, SetBool
        try:
            self._wait_ready(startup_timeout)
        except BaseException:
            self.close()
            raise

    # ---- plumbing -------------------------------------------------------------------------
    def _check_alive(self) -> None:
        dead = [p for p in self.procs if not p.alive()]
        if dead:
            raise RuntimeError("a node exited:\n" + "\n".join(
                f"--- {' '.join(p.cmd[:3])}\n{p.output()}" for p in dead))

    def _sim_elapsed(self) -> float:
        """Sim seconds since the episode's reset, as the newest status has it."""
        return float(self.status.get("elapsed", 0.0))

    def _reached(self, condition: Callable[[], bool], sim_limit: float) -> bool:
        """Spin until `condition` holds or `sim_limit` seconds of sim time (the status's clock)
        have passed: a stalled motion costs the same at any pace; wall time only as the
        backstop for a simulator that stopped."""
        clock = _SimStopwatch(self._sim_elapsed)
        self._spin_until(lambda: condition() or clock.seconds() >= sim_limit,
                         sim_limit * self._slow)
        return condition()

    def _spin_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            self.executor.spin_once(timeout_sec=0.02)
            self._check_alive()
        return condition()

    def _enable(self, limit_s: float = 3.0) -> None:
        """Clear a latched stop as an operator would: /wam/enable is refused while its cause
        persists (the arm still away from the held command, which it is driven back to), so
        ask again for up to `limit_s` (sim time) until it is accepted or nothing is latched."""
        deadline = time.monotonic() + limit_s * self._slow
        while True:
            answer = self._call(self.enable, self._Trigger.Request())
            if answer.success or "no stop is latched" in answer.message \
                    or time.monotonic() > deadline:
                return
            self._spin_until(lambda: False, 0.2)

    def _call(self, client, request, timeout: float = 30.0,
              took_effect: Callable[[], bool] | None = None):
        """The service's answer. A request goes out again every SERVICE_RETRY_S without one:
        Fast DDS drops a response when the server has not yet matched the client's reader
        (discovery on a loaded host), and the client would wait forever. took_effect: for a
        request that must not run twice, whether the first one was served (then no resend,
        and None if its answer never comes)."""
        if not self._spin_until(client.service_is_ready, timeout):
            raise RuntimeError(f"service {client.srv_name} not available")
        deadline = time.monotonic() + timeout
        futures = []
        while time.monotonic() < deadline:
            futures.append(client.call_async(request))
            wait = min(SERVICE_RETRY_S, deadline - time.monotonic())
            if self._spin_until(lambda: any(f.done() for f in futures), wait):
                return next(f for f in futures if f.done()).result()
            if took_effect is not None and took_effect():
                return None
            self.log(f"[closed-loop] no answer from {client.srv_name} in "
                     f"{SERVICE_RETRY_S:g} s; asking again")
        raise RuntimeError(f"service {client.srv_name} did not answer in {timeout:.0f} s")

    def _wait_ready(self, timeout: float) -> None:
        self.log(f"[closed-loop] starting the simulator and the node graph "
                 f"({len(self.procs)} processes) ...")
        t0 = time.monotonic()
        ok = self._spin_until(lambda: bool(self.status) and self.measured is not None
                              and bool(self._tags), timeout)
        if not ok:
            raise RuntimeError("the graph did not come up (no status, joint state or first "
                               "command) within {:.0f} s:\n{}".format(
                                   timeout, "\n".join(p.output() for p in self.procs)))
        self.log(f"[closed-loop] ready in {time.monotonic() - t0:.1f} s")

    # ---- episodes ---------------------------------------------------------------------------
    def episode(self, timeout_s: float, trace: bool = False,
                video_path: Path | None = None) -> EpisodeResult:
        """One episode; `video_path`: film it there (the loop made with video=True)."""
        if video_path is not None and not self.video_enabled:
            raise ValueError("episode(video_path=...) needs ClosedLoop(..., video=True)")
        try:
            return self._episode(timeout_s, trace, video_path)
        finally:
            if self._film is not None:
                film, self._film = self._film, None
                film.close()

    def _episode(self, timeout_s: float, trace: bool, video_path: Path | None
                 ) -> EpisodeResult:
        req = self._SetBool.Request(data=False)
        self._call(self.policy_run, req)
        # arm joints only: a gripper still closed on an object cannot reach its home opening
        # (the scene reset below frees it)
        home, arm = self.spec.home_vector(), ~self.spec.gripper_mask()

        def off_home() -> np.ndarray:  # (D,) arm joints' distance from home (grippers 0)
            return np.abs(self.measured - home) * arm

        # As an operator would: clear a stop of the last episode, home; a move home can latch a
        # stop of its own (the arm still holds the object against the bin or the table), so
        # a stalled homing is re-enabled and retried, the last time after the scene is reset
        # (the object taken away; the arm stands at home there, the smoother brings its
        # commands back to it).
        def at_home() -> bool:
            return self.measured is not None and float(off_home().max()) < 0.02

        answer = None
        for attempt in range(3):
            if attempt == 2:
                self._reset_scene()
            self._enable()
            answer = self._call(self.home, self._Trigger.Request())
            if not answer.success:  # still stopped: the arm could not get back to its
                continue  # held command (the object in the way); the scene reset frees it
            if self._reached(at_home, HOMING_LIMIT_S * (3.0 if attempt == 2 else 1.0)):
                break
        else:
            if answer is not None and not answer.success:
                raise RuntimeError(answer.message)
            error = off_home()  # joint states have arrived (the graph came up with them)
            far = [f"{self.spec.action_layout[i]} {error[i]:.3f} rad"
                   for i in np.flatnonzero(error >= 0.02)]
            raise RuntimeError(f"the arm did not get home in 3 attempts: {', '.join(far)}")
        before = self._reset_scene()
        self._spin_until(lambda: self.status.get("episode") != before
                         and self.status.get("elapsed", 1.0) < 0.5, 10.0 * self._slow)
        seed = int(self.status.get("seed", -1))
        self.trace = Trace() if trace else None
        self._tags.clear()
        if video_path is not None:
            self._video_raw.clear()
            self._video_count = 0
            self._video_label = f"episode seed {seed}"
            self._film = FilmWorker(RunVideo(video_path, self.spec.cameras[0].rate_hz /
                                             VIDEO_EVERY), decode=_film_frame)
        wall0 = time.monotonic()
        # sent again only while no plan has reached the arm: a second start resets the
        # policy's memory mid-episode
        self._call(self.policy_run, self._SetBool.Request(data=True),
                   took_effect=lambda: bool(self._tags))
        self._spin_until(lambda: bool(self.status.get("success"))
                         or self._sim_elapsed() >= timeout_s,
                         timeout_s * self._slow + 60.0)
        wall = time.monotonic() - wall0
        success = bool(self.status.get("success"))
        elapsed = self._sim_elapsed()
        lat = [(t_cmd - stamp) * 1e3 for stamp, t_cmd in self._tags if t_cmd >= stamp]
        self._call(self.policy_run, self._SetBool.Request(data=False))
        return EpisodeResult(seed, success, elapsed if success else timeout_s, lat, wall,
                             elapsed, str(self.status.get("phase", "")))

    def _reset_scene(self) -> object:
        """The simulator's next scene (once: a second reset would skip a scene); returns the
        episode number before it."""
        before = self.status.get("episode")
        self._call(self.sim_reset, self._Trigger.Request(),
                   took_effect=lambda: self.status.get("episode") != before)
        return before

    def close(self) -> None:
        try:
            self.executor.shutdown()
            self.node.destroy_node()
            self.context.try_shutdown()
        finally:
            for p in self.procs:
                p.stop()


def summarise(results: list[EpisodeResult]) -> dict[str, float]:
    lat = [v for r in results for v in r.latencies_ms]
    done = [r.completion_s for r in results if r.success]
    return {
        "episodes": len(results),
        "success_rate": float(np.mean([r.success for r in results])) if results else 0.0,
        "mean_completion_s": float(np.mean(done)) if done else float("nan"),
        "latency_ms.p50": float(np.percentile(lat, 50)) if lat else float("nan"),
        "latency_ms.p99": float(np.percentile(lat, 99)) if lat else float("nan"),
        "real_time_factor": float(np.mean([r.real_time_factor for r in results]))
        if results else float("nan"),
    }




def prepared_checkpoint(checkpoint: Path, backend: str, workdir: Path) -> Path:
    """The checkpoint, or a copy in `workdir` with an ONNX export when the backend needs one
    and the checkpoint has none (the shipped defaults keep only the weights)."""
    if backend not in ("onnxruntime", "tensorrt") or (checkpoint / "onnx").is_dir():
        return checkpoint
    import shutil

    from wam_ros.model.export import export_onnx

    copy = workdir / "checkpoint"
    if not (copy / "onnx").is_dir():
        shutil.copytree(checkpoint, copy, dirs_exist_ok=True)
        export_onnx(copy, log=lambda *_: None)
    return copy


__all__ = ["ClosedLoop", "EpisodeResult", "Trace", "prepared_checkpoint", "summarise"]
