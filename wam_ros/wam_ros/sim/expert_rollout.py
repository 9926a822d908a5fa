"""Running a scripted expert (sim/experts.py): reset, plan and execute an episode in the
simulator (`run_expert`; `execute_plan` runs a given plan from the present state), or perform
the plans as a teleop operator (`ExpertOperator`, `wam-ros record --teleop expert`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from wam_ros.sim.experts import ScriptedExpert, make_expert
from wam_ros.sim.mujoco_sim import Simulator
from wam_ros.sim.planning import Plan, PlanningError


class ExpertOperator:
    """A teleop operator (`data.teleop.Operator`) that performs a scripted expert's plan: the
    simulated operator of `wam-ros record --sim mujoco --teleop expert`.

    `reset(state, seed)` starts a new episode through `new_episode(seed)`, which resets the
    simulator (objects from `seed`; None = the next seed) and returns the object poses right
    after the reset, and plans from them; a scene the expert cannot plan for is replaced by the
    next seed's (up to `attempts` scenes). `reset(state)` without a seed plans only if nothing
    was planned yet (the teleop node calls it at its first tick). Thread-safe: the teleop
    node's timer and an episode controller may reset at once. `action(t, state)` is the plan's
    action at episode time t, its last one once the plan is done."""

    def __init__(self, expert: ScriptedExpert,
                 new_episode: Callable[[int | None], dict[str, np.ndarray]],
                 attempts: int = 5) -> None:
        self.expert = expert
        self.new_episode = new_episode
        self.attempts = attempts
        self.dt = expert.sim.robot.action_dt
        self.plan_: Plan | None = None
        self.skipped: list[str] = []  # why scenes were replaced
        self._lock = threading.Lock()

    def reset(self, follower_state: np.ndarray | None = None, seed: int | None = None) -> None:
        with self._lock:
            if seed is None and self.plan_ is not None:
                return
            self.plan_ = None
            for attempt in range(self.attempts):
                poses = self.new_episode(seed if attempt == 0 else None)
                try:
                    self.plan_ = self.expert.plan(poses)
                    return
                except PlanningError as exc:
                    self.skipped.append(str(exc))
            raise PlanningError(f"no plan in {self.attempts} scenes; last: {self.skipped[-1]}")

    def action(self, t: float, follower_state: np.ndarray | None) -> np.ndarray:
        if self.plan_ is None:
            self.reset(follower_state)
        actions = self.plan_.actions
        return actions[min(max(round(t / self.dt), 0), len(actions) - 1)]


@dataclass
class Rollout:
    success: bool
    steps: int
    seconds: float  # sim time
    phase: str  # the task's phase at the end
    plan: Plan


def run_expert(sim: Simulator, expert: ScriptedExpert | None = None, seed: int | None = None,
               on_step=None) -> Rollout:
    """Reset (with `seed`), plan, execute every action at the action rate; `on_step(sim,
    action)` is called before each action is applied (record observations there)."""
    sim.reset(seed)
    expert = expert or make_expert(sim)
    plan = expert.reset()
    status = execute_plan(sim, plan, on_step)
    return Rollout(status.success, len(plan.actions), sim.elapsed, status.phase, plan)


def execute_plan(sim: Simulator, plan: Plan, on_step=None):
    """Command every action of `plan` at the action rate from the simulator's present state;
    `on_step(sim, action)` before each. Returns the simulator's status at the end."""
    dt = sim.robot.action_dt
    for action in plan.actions:
        if on_step is not None:
            on_step(sim, action)
        sim.command_action(action)
        sim.step(dt)
    return sim.status()


__all__ = ["ExpertOperator", "Rollout", "execute_plan", "run_expert"]
