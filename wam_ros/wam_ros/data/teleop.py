"""Teleoperation without ROS: operators that produce actions, and the mapping between an action
vector and the leader / command messages of a robot's `teleop:` config.

An operator is anything with

    action(t, follower_state) -> (D,) absolute action, robot action layout, joint units (rad /
                                 m) for arm joints and grippers normalised 0 (closed) .. 1 (open)
    reset(follower_state)     -> new episode (optional)

`t` is seconds since the episode started and `follower_state` the follower's joints in the same
convention (None before the first joint state). `ScriptedOperator` (smooth, seeded, within the
limits) and `KeyboardOperator` (jog joints from a terminal) ship here; a scripted expert of the
simulator, or anything else, plugs in by name: `make_operator("package.module:Factory", spec)`
calls `Factory(spec, **options)`.

`LeaderMap` turns an action into the values each leader publishes (inverse of the robot config's
`scale`, relative to the follower for `space: delta`) and leader values back into an action,
which is what the dataset builder does with recorded leader messages.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from wam_ros.core.robot import RobotSpec


class Operator(Protocol):
    def action(self, t: float, follower_state: np.ndarray | None) -> np.ndarray: ...


# ---- leader messages <-> action --------------------------------------------------------
class LeaderMap:
    """Index bookkeeping between the action layout and the robot's teleop sources."""

    def __init__(self, spec: RobotSpec) -> None:
        if spec.teleop is None:
            raise ValueError(f"robot {spec.name} has no `teleop:` section in "
                             f"{spec.source}; add one naming the leader / command topics")
        self.spec = spec
        self.sources = spec.teleop.sources
        layout = list(spec.action_layout)
        self.index = {s.name: np.array([layout.index(j) for j in s.joints])
                      for s in self.sources}
        self.scale = {s.name: np.asarray(s.scale, np.float64) for s in self.sources}
        self.grippers = spec.gripper_mask()

    def to_messages(self, action: np.ndarray, follower: np.ndarray | None = None
                    ) -> dict[str, np.ndarray]:
        """Action (grippers normalised) -> per source, the values in its message's name order
        (the source's own units: value = joint / scale)."""
        joints = self.spec.action_to_joint(np.asarray(action, np.float64))
        out = {}
        for s in self.sources:
            values = joints[self.index[s.name]]
            if s.space == "delta":
                if follower is None:
                    raise ValueError(f"leader {s.name}: delta commands need the follower state")
                values = values - self.spec.action_to_joint(follower)[self.index[s.name]]
            out[s.name] = values / self.scale[s.name]
        return out

    def to_action(self, values: dict[str, np.ndarray], follower: np.ndarray | None = None
                  ) -> np.ndarray:
        """Per source message values -> action (grippers normalised); joints of a source that
        is missing stay NaN. follower: action-convention state, needed for delta sources."""
        joints = np.full(self.spec.action_dim, np.nan)
        for s in self.sources:
            v = values.get(s.name)
            if v is None:
                continue
            v = np.asarray(v, np.float64) * self.scale[s.name]
            if s.space == "delta":
                if follower is None:
                    raise ValueError(f"leader {s.name}: delta commands need the follower state")
                v = v + self.spec.action_to_joint(follower)[self.index[s.name]]
            joints[self.index[s.name]] = v
        out = joints.copy()
        g = self.grippers & np.isfinite(joints)
        out[g] = self.spec.joint_to_action(np.where(g, joints, 0.0))[g]
        return out

    def clip(self, action: np.ndarray) -> np.ndarray:
        """Inside the joint limits (grippers 0..1)."""
        lo = np.where(self.grippers, 0.0, self.spec.limits_array("lower"))
        hi = np.where(self.grippers, 1.0, self.spec.limits_array("upper"))
        return np.clip(action, lo, hi)


# ---- operators ----------------------------------------------------------------------
def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


class ScriptedOperator:
    """A smooth, seeded trajectory around the home pose: per joint a sum of two sinusoids
    (0.05..0.3 Hz) with amplitude `amplitude` x the joint's half range, limited to 40 % of the
    joint's velocity limit and kept `margin` inside the limits; grippers open and close every
    few seconds with smooth transitions. The first `ramp_s` blend from the follower's state at
    the start of the episode, so the leader never jumps."""

    def __init__(self, spec: RobotSpec, seed: int = 0, amplitude: float = 0.3,
                 ramp_s: float = 1.0, margin: float = 0.05) -> None:
        self.spec = spec
        self.seed = seed
        self.amplitude = amplitude
        self.ramp_s = ramp_s
        grip = spec.gripper_mask()
        self.grippers = grip
        lo, hi = spec.limits_array("lower"), spec.limits_array("upper")
        span = hi - lo
        self.lo = np.where(grip, 0.0, lo + margin * span)
        self.hi = np.where(grip, 1.0, hi - margin * span)
        self.center = np.clip(spec.joint_to_action(spec.home_vector()), self.lo, self.hi)
        self.vmax = 0.4 * spec.limits_array("velocity")
        self._start: np.ndarray | None = None
        self.reset()

    def reset(self, follower_state: np.ndarray | None = None, seed: int | None = None) -> None:
        if seed is not None:
            self.seed = seed
        rng = np.random.default_rng(self.seed)
        d = self.spec.action_dim
        half = (self.hi - self.lo) / 2
        self.freq = rng.uniform(0.05, 0.3, (2, d))
        self.phase = rng.uniform(0, 2 * np.pi, (2, d))
        amp = self.amplitude * half * rng.uniform(0.5, 1.0, (2, d)) / 2
        # peak speed sum(2 pi f A) within vmax
        speed = (2 * np.pi * self.freq * amp).sum(0)
        amp = amp * np.minimum(1.0, self.vmax / np.maximum(speed, 1e-9))
        self.amp = amp
        self.grip_period = rng.uniform(3.0, 5.0, d)
        self._start = None if follower_state is None else np.asarray(follower_state, float)

    def _target(self, t: float) -> np.ndarray:
        wave = (self.amp * (np.sin(2 * np.pi * self.freq * t + self.phase)
                            - np.sin(self.phase))).sum(0)
        q = self.center + wave
        # grippers: open (1) for half a period, closed (0.2) for the other, smooth edges
        cycle = (t / self.grip_period) % 1.0
        opening = 0.2 + 0.8 * np.array([_smoothstep((0.5 - abs(c - 0.5)) * 8 - 1.0)
                                         for c in cycle])
        q = np.where(self.grippers, opening, q)
        return np.clip(q, self.lo, self.hi)

    def action(self, t: float, follower_state: np.ndarray | None) -> np.ndarray:
        target = self._target(t)
        if self._start is None:
            self._start = (np.asarray(follower_state, float) if follower_state is not None
                           else self._target(0.0))
        w = _smoothstep(t / self.ramp_s) if self.ramp_s > 0 else 1.0
        return (1 - w) * self._start + w * target


class KeyboardOperator:
    """Jog joints from a terminal. Keys (see KEY_HELP): `]` / `[` next / previous joint,
    `+` / `-` (or up / down arrows) jog the selected joint by `step` (rad or m),
    `g` toggles the gripper of the selected joint's arm, `h` returns to home.
    Keys arrive through `feed(keys)` (a terminal reader thread, a test)."""

    KEY_HELP = "] / [ joint  + / - (up / down) jog  g gripper  h home"

    def __init__(self, spec: RobotSpec, step: float = 0.02) -> None:
        self.spec = spec
        self.step = step
        self.selected = 0
        self.grippers = spec.gripper_mask()
        self.target: np.ndarray | None = None
        self._pending: list[str] = []
        self.map_lo = np.where(self.grippers, 0.0, spec.limits_array("lower"))
        self.map_hi = np.where(self.grippers, 1.0, spec.limits_array("upper"))

    def reset(self, follower_state: np.ndarray | None = None) -> None:
        self.target = None if follower_state is None else np.asarray(follower_state, float)

    def feed(self, keys: Iterable[str]) -> None:
        self._pending.extend(keys)

    @property
    def selected_joint(self) -> str:
        return self.spec.action_layout[self.selected]

    def _arm_gripper(self, joint: str) -> int | None:
        for arm in self.spec.arms:
            if arm.gripper is not None and (joint in arm.joints or joint == arm.gripper.joint):
                return list(self.spec.action_layout).index(arm.gripper.joint)
        return None

    def action(self, t: float, follower_state: np.ndarray | None) -> np.ndarray:
        if self.target is None:
            self.target = (np.asarray(follower_state, float) if follower_state is not None
                           else self.spec.joint_to_action(self.spec.home_vector()))
        d = self.spec.action_dim
        for key in self._pending:
            if key in ("]", "\t", "right"):
                self.selected = (self.selected + 1) % d
            elif key in ("[", "left"):
                self.selected = (self.selected - 1) % d
            elif key in ("+", "=", "up", "-", "_", "down"):
                sign = 1.0 if key in ("+", "=", "up") else -1.0
                step = 0.1 if self.grippers[self.selected] else self.step
                self.target[self.selected] += sign * step
            elif key == "g":
                g = self._arm_gripper(self.selected_joint)
                if g is not None:
                    self.target[g] = 0.0 if self.target[g] > 0.5 else 1.0
            elif key == "h":
                self.target = self.spec.joint_to_action(self.spec.home_vector())
        self._pending.clear()
        self.target = np.clip(self.target, self.map_lo, self.map_hi)
        return self.target.copy()


@dataclass(frozen=True)
class TeleopSettings:
    """The teleop node's parameters.
    operator: scripted | keyboard | "package.module:Factory" (Factory(spec) -> operator).
    rate_hz: leader messages (and follower commands) per second.
    drive_follower: also command the follower arms through the robot's controller topics, as
        the leader-follower hardware does (simulator / fake robot); off on a real CobotMagic.
    duration_s: the scripted operator holds its last action after this long (0 = never).
    """

    robot: str = "cobot_magic"
    operator: str = "scripted"
    seed: int = 0
    amplitude: float = 0.3
    rate_hz: float = 50.0
    drive_follower: bool = True
    duration_s: float = 0.0
    jog_step: float = 0.02

    def __post_init__(self) -> None:
        if not 0.0 < self.rate_hz <= 1000.0:
            raise ValueError(f"rate_hz: got {self.rate_hz!r}; allowed: 0 < rate_hz <= 1000")
        if not 0.0 <= self.amplitude <= 1.0:
            raise ValueError(f"amplitude: got {self.amplitude!r}; allowed: 0..1")
        if self.duration_s < 0:
            raise ValueError(f"duration_s: got {self.duration_s!r}; allowed: >= 0")
        if self.operator not in OPERATORS and ":" not in self.operator:
            raise ValueError(f"operator: got {self.operator!r}; allowed: "
                             f"{', '.join(OPERATORS)} or 'package.module:Factory'")


OPERATORS: dict[str, Callable[..., Any]] = {
    "scripted": ScriptedOperator,
    "keyboard": KeyboardOperator,
}


def make_operator(name: str, spec: RobotSpec, **options: Any) -> Any:
    """An operator by registry name, or "package.module:Factory" (called with spec and the
    options): how a simulator's scripted expert plugs in."""
    if name in OPERATORS:
        return OPERATORS[name](spec, **options)
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"operator {name!r}: cannot load {attr} from {module} ({exc})"
                             ) from exc
        operator = factory(spec, **options)
        if not callable(getattr(operator, "action", None)):
            raise ValueError(f"operator {name!r}: {attr}(...) has no action(t, state) method")
        return operator
    raise ValueError(f"unknown operator {name!r}; allowed: {', '.join(OPERATORS)} or "
                     "'package.module:Factory'")


__all__ = ["OPERATORS", "KeyboardOperator", "LeaderMap", "Operator", "ScriptedOperator",
           "TeleopSettings", "make_operator"]
