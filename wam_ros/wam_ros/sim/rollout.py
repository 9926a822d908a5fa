"""A checkpoint in closed loop on the simulator, without ROS: the quick check of a policy.

    result = policy_rollout(sim, policy, seed=3, execute=8, timeout=15.0)

Each step renders the cameras at the model's input size, infers a chunk, decodes it to absolute
joints (`ChunkDecoder`, as the decoder node does) and executes its first `execute` actions at the
action rate through the same mock controllers the sim node drives; the sim waits for the model
(latency only as `delay` models it), so this measures what the policy does, not how fast the
stack is.
The ROS graph's own episodes are `wam_ros.apps.closed_loop`; a checkpoint that fails here will not
succeed there.

    result = stack_rollout(sim, policy, seed=3, scheduler="async", latency_s=0.1)

runs the same episode through the robot-side runtime instead (runtime.stack.SimulatedStack: the
policy node's scheduler, the decoder, the smoother's timeline, Savitzky-Golay and limits at the
control rate, mock controllers fed like the sim node feeds them), on the simulator's clock with a
fixed simulated inference latency: the graph minus DDS, deterministic and faster than real time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wam_ros.core.decoding import ChunkDecoder
from wam_ros.data.run_video import overlay_lines


@dataclass
class PolicyRollout:
    seed: int
    success: bool
    seconds: float  # sim time to success (or the timeout)
    phase: str  # the task's furthest phase at the end
    infer_ms: list[float] = field(default_factory=list)  # per chunk (Chunk.inference_time)
    # stack rollouts: share of control ticks the arm held for lack of a plan (the scheduler's)
    idle_fraction: float | None = None

    @property
    def chunks(self) -> int:
        return len(self.infer_ms)


def policy_rollout(sim, policy, seed: int, execute: int = 8, timeout: float = 15.0,
                   image_size: tuple[int, int] | None = None,
                   decoder: ChunkDecoder | None = None, on_step=None,
                   delay: int = 0, video=None) -> PolicyRollout:
    """One episode: reset the scene with `seed` and the policy's memory, then plan / execute
    `execute` actions of each chunk until success or `timeout` sim seconds. `on_step(sim,
    command)` is called before each command is applied.

    `delay` (actions) models inference latency as the async scheduler lives it: the arm goes
    on with the previous chunk for `delay` actions after the observation, then the new chunk
    takes over at its action `delay` (its earlier actions are already in the past).
    `video` (data.run_video.RunVideo): a frame of the cameras after every action."""
    if execute < 1:
        raise ValueError(f"execute: got {execute}; allowed: >= 1 actions per chunk")
    if not 0 <= delay < execute:
        raise ValueError(f"delay: got {delay}; allowed: 0 <= delay < execute ({execute})")
    h, w = image_size or tuple(policy.meta.image_size)
    decoder = decoder or ChunkDecoder(sim.robot)
    sim.reset(seed)
    policy.reset()
    dt = sim.robot.action_dt
    infer_ms: list[float] = []
    status = sim.status()
    pending = np.empty((0, sim.robot.action_dim))  # the previous chunk's unexecuted actions
    while not status.success and sim.elapsed < timeout:
        obs = sim.observation(width=w, height=h)
        chunk = policy.infer(obs)
        infer_ms.append(chunk.inference_time * 1e3)
        actions = decoder.decode(chunk, obs.joint_positions).actions
        # while the model "thinks" the arm follows the old plan, holding at its last action if
        # that runs out (at the episode start: holding at the new chunk's first)
        old = pending if len(pending) else actions[:1]
        late = old[np.minimum(np.arange(delay), len(old) - 1)]
        plan = np.concatenate([late, actions[delay:]])
        pending = actions[min(execute, len(actions)):]
        for command in plan[:min(execute, len(plan))]:
            if on_step is not None:
                on_step(sim, command)
            sim.command_joints(np.asarray(command, dtype=np.float64))
            sim.step(dt)
            status = sim.status()
            if video is not None:
                video.add(sim.observation(width=w, height=h).images,
                          overlay_lines(f"seed {seed}", sim.elapsed, status.phase,
                                        infer_ms[-1] + delay * dt * 1e3))
            if status.success or sim.elapsed >= timeout:
                break
    return PolicyRollout(int(seed), bool(status.success), float(sim.elapsed), status.phase,
                         infer_ms)


def stack_rollout(sim, policy, seed: int, scheduler: str = "async", latency_s: float = 0.1,
                  timeout: float = 15.0, image_size: tuple[int, int] | None = None,
                  pipeline_config=None, on_command=None,
                  policy_settings: dict | None = None,
                  latency_p99_s: float | None = None, handoff_s: float = 0.0,
                  stop=None, video=None) -> PolicyRollout:
    """One episode through SimulatedStack (module docstring): cameras at the robot's first
    camera rate, joint states and commands at the control rate; `on_command(sim, out)` sees
    each PipelineOutput before it is applied; `policy_settings`, `handoff_s` and
    `latency_p99_s` (a latency tail, drawn with the episode's seed) as SimulatedStack's.
    `stop(status)` (a SimStatus) ends the episode early where it returns True. `video`
    (data.run_video.RunVideo): a frame of the cameras at every observation."""
    from wam_ros.runtime.stack import SimulatedStack

    h, w = image_size or tuple(policy.meta.image_size)
    sim.reset(seed)
    policy.reset()
    stack = SimulatedStack(policy, sim.robot, scheduler=scheduler, latency_s=latency_s,
                           latency_p99_s=latency_p99_s, seed=seed, handoff_s=handoff_s,
                           pipeline_config=pipeline_config, policy_settings=policy_settings)

    def run_to(t: float) -> None:
        if t - sim.time >= 0.5 * sim.dt:  # sim.step rounds to whole physics steps
            sim.step(t - sim.time)

    def measure(now: float) -> np.ndarray:
        run_to(now)
        return sim.joint_positions()

    def command(now: float, out) -> None:
        if on_command is not None:
            on_command(sim, out)
        sim.command_joints(out.positions)

    frame_dt = 1.0 / sim.robot.cameras[0].rate_hz
    t0 = sim.time
    stack.start(t0)
    next_frame = t0
    status = sim.status()
    while not status.success and sim.elapsed < timeout and not (stop and stop(status)):
        stack.advance(next_frame, measure, command)
        run_to(next_frame)
        obs = sim.observation(width=w, height=h)
        stack.observe(obs, sim.time)
        next_frame += frame_dt
        status = sim.status()
        if video is not None:
            latency = stack.trace.plan_latency[-1][1] * 1e3 if stack.trace.plan_latency \
                else None
            video.add(obs.images, overlay_lines(f"seed {seed}", sim.elapsed, status.phase,
                                                latency))
    return PolicyRollout(int(seed), bool(status.success), float(sim.elapsed), status.phase,
                         stack.trace.compute_ms, stack.runner.scheduler.idle_fraction)


__all__ = ["PolicyRollout", "policy_rollout", "stack_rollout"]
