"""Graph-paced simulation (ROS-free, times passed in).

A simulator paced to the wall clock runs on whatever the node graph's CPU gives it; on a
starved machine (other processes, a virtual machine's steal time) the graph falls behind the
simulated robot: commands go out late, observations are old, and a policy is judged on a
computer slower than the one it would run on. In graph-paced mode the simulator watches the
age of the newest controller command (sim time) while commands flow (the graph sends one
every control period): when more than LATE_SHARE of the sim steps in an ADAPT_PERIOD see one
older than `max_command_age`, the pace drops by PACE_DOWN; a period without a late step
brings it back by PACE_UP, never above the requested real-time factor nor below PACE_FLOOR of
it. What the graph then sees is a robot whose on-board computer keeps up with it.
"""

from __future__ import annotations

from wam_ros.core.config import ConfigError

ADAPT_PERIOD = 0.25  # s wall time between pace decisions
LATE_SHARE = 0.01  # share of late sim steps in a period that slows the pace
PACE_DOWN, PACE_UP = 0.8, 1.1  # pace factors: a late period, an on-time one
PACE_FLOOR = 0.1  # the pace never drops below this share of real_time_factor
COMMANDS_IDLE_S = 1.0  # sim s without a command: the graph is not commanding, nothing is late


class GraphPace:
    """The pace (sim seconds per wall second) of a graph-paced simulation."""

    def __init__(self, target: float, max_command_age: float) -> None:
        if max_command_age < 0:
            raise ConfigError(f"max_command_age_s: got {max_command_age}; allowed: >= 0 "
                              "(0: a fixed pace)")
        self.target, self.max_age = target, max_command_age
        self.pace = target
        self.last_command: float | None = None  # sim time of the newest command
        self.steps = self.late = 0

    @property
    def enabled(self) -> bool:
        return self.max_age > 0 and self.target > 0

    def on_command(self, sim_now: float) -> None:
        self.last_command = sim_now

    def on_step(self, sim_now: float) -> None:
        """After a sim step: count it as late when the newest command is too old."""
        if not self.enabled or self.last_command is None:
            return
        age = sim_now - self.last_command
        if 0.0 <= age < COMMANDS_IDLE_S:
            self.steps += 1
            self.late += age > self.max_age

    def adapt(self) -> bool:
        """End of an ADAPT_PERIOD: new pace from its steps; True when the pace changed."""
        old = self.pace
        if self.steps and self.late > LATE_SHARE * self.steps:
            self.pace = max(PACE_FLOOR * self.target, self.pace * PACE_DOWN)
        elif self.steps:
            self.pace = min(self.target, self.pace * PACE_UP)
        self.steps = self.late = 0  # a disabled pace never counts steps: it never changes
        return self.pace != old


__all__ = ["ADAPT_PERIOD", "PACE_FLOOR", "GraphPace"]
