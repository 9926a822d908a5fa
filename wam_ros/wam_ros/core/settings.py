"""Per-node settings: the single source of truth for every node parameter.

nodes/params.py declares one ROS parameter per field (same name, same default) and builds
these dataclasses from them; config/wam_ros.yaml sets them with ros__parameters. Validation
lives here, so a bad value fails at start-up with the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from wam_ros.core.config import ConfigError
from wam_ros.core.image import RESIZE_MODES

# The registries of the policy's choices: every CLI choice, launch argument and validation
# imports them from here (the lowest layer, so model/ and runtime/, which implement them, can).
# Local backends run the model in-process (runtime/backends.py); remote: a policy server of the
# openpi websocket protocol (runtime/remote.py).
LOCAL_BACKENDS = ("torch", "onnxruntime", "tensorrt")
BACKENDS = (*LOCAL_BACKENDS, "remote")
MEMORIES = ("kv", "ttt")  # model/memory.py, model/ttt.py
SCHEDULERS = ("sync", "async", "sai")  # runtime/scheduler.py
MODES = ("joint", "fast", "two_stage")  # model/wam.py

# A node process started with this variable set to N (1..99) runs its control path (executor,
# DDS threads) SCHED_FIFO at N (nodes/common.py): read before rclpy starts any thread, so an
# environment variable (launch argument realtime_priority), not a ROS parameter.
RT_PRIORITY_ENV = "WAM_ROS_RT_PRIORITY"
RT_PRIORITY_MAX = 99
# What the launch files use unless told otherwise: below ros2_control's controller manager (50),
# so the arm's own update loop still preempts the graph, and above everything at normal priority
# (drivers, the model's inference threads). Without the rtprio limit the nodes say so and run at
# normal priority.
RT_PRIORITY_DEFAULT = 40


# (class name, field) -> (minimum, maximum, choices): the bounds validate() checks, recorded as
# it runs, so that ROS parameter descriptors can state them (settings_bounds)
_BOUNDS: dict[tuple[str, str], tuple[object, object, tuple | None]] = {}


def settings_bounds(cls: type) -> dict[str, tuple[object, object, tuple | None]]:
    """field -> (minimum, maximum, choices) of a settings class, as its validate() checks
    them (positive: minimum 0, exclusive)."""
    cls()  # validating the defaults records every bound
    return {f: b for (c, f), b in _BOUNDS.items() if c == cls.__name__}


def _check(cls_name: str, name: str, value, *, choices=None, positive=False, minimum=None,
           maximum=None) -> None:
    where = f"{cls_name}.{name}"
    _BOUNDS[(cls_name, name)] = (0 if positive and minimum is None else minimum, maximum,
                                 tuple(choices) if choices is not None else None)
    if choices is not None and value not in choices:
        raise ConfigError(f"{where}: got {value!r}; allowed: {', '.join(choices)}")
    if positive and not value > 0:
        raise ConfigError(f"{where}: got {value!r}; allowed: > 0")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where}: got {value!r}; allowed: >= {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{where}: got {value!r}; allowed: <= {maximum}")


class _Settings:
    def __post_init__(self) -> None:
        # ROS hands integers for float parameters written without a decimal point
        for f in fields(self):  # type: ignore[arg-type]
            if f.type == "float" and isinstance(getattr(self, f.name), int):
                object.__setattr__(self, f.name, float(getattr(self, f.name)))
        self.validate()

    def validate(self) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class ObservationSettings(_Settings):
    robot: str = "cobot_magic"  # robot config name (config/robots/<robot>.yaml) or a YAML path
    # 0 (default): the size the policy announces on /wam/policy/input (its checkpoint's or its
    # server's); > 0: this size, whatever the policy takes (the policy refuses a mismatch)
    image_width: int = 0
    image_height: int = 0  # as image_width
    resize_mode: str = "center_crop"  # center_crop keeps the aspect ratio; resize stretches
    slop_s: float = 0.02  # cameras' stamps within a set may differ by this much
    # joints interpolated at the set's stamp between the joint states either side of it; a set
    # waits this long for the one after it, and takes none farther than this from its stamp
    joint_slop_s: float = 0.03
    # within one joint-state interval after the newest joint state, extrapolate from the last
    # two instead of waiting for the next (core/sync.py)
    joint_extrapolate: bool = True
    max_age_s: float = 0.3  # frames older than this on arrival are stale
    # frames and joint states stamped more than this ahead of the node's clock are refused
    max_future_s: float = 0.5
    # a compressed frame whose header announces more pixels is refused before decoding
    max_image_pixels: int = 4096 * 4096
    # joint states outside a joint's limits by more than this share of its range are refused
    limit_margin: float = 0.05
    # an input with nothing usable for this long is dead (ERROR in /diagnostics)
    input_dead_after_s: float = 1.0
    # an input below (1 - this) x its configured rate is WARN in /diagnostics
    rate_tolerance: float = 0.5

    def validate(self) -> None:
        n = type(self).__name__
        _check(n, "max_future_s", self.max_future_s, minimum=0.0)
        _check(n, "max_image_pixels", self.max_image_pixels, positive=True)
        _check(n, "limit_margin", self.limit_margin, minimum=0.0)
        _check(n, "input_dead_after_s", self.input_dead_after_s, positive=True)
        _check(n, "rate_tolerance", self.rate_tolerance, minimum=0.0, maximum=1.0)
        _check(n, "image_width", self.image_width, minimum=0)
        _check(n, "image_height", self.image_height, minimum=0)
        if (self.image_width == 0) != (self.image_height == 0):
            raise ConfigError(f"{n}.image_width, image_height: got {self.image_width}, "
                              f"{self.image_height}; allowed: both 0 (the policy's size) or "
                              "both > 0")
        _check(n, "resize_mode", self.resize_mode, choices=RESIZE_MODES)
        _check(n, "slop_s", self.slop_s, minimum=0.0)
        _check(n, "joint_slop_s", self.joint_slop_s, minimum=0.0)
        _check(n, "max_age_s", self.max_age_s, positive=True)


@dataclass(frozen=True)
class PolicySettings(_Settings):
    robot: str = "cobot_magic"  # robot config name (config/robots/<robot>.yaml) or a YAML path
    checkpoint: str = ""  # empty: the shipped default checkpoint of the robot
    # lifecycle: configure (load, warm up) and activate at start; false: wait for
    # `ros2 lifecycle set` (or a lifecycle manager)
    autostart: bool = True
    backend: str = "torch"  # inference backend (remote: an openpi-protocol policy server)
    memory: str = "kv"  # kv: KV cache with observation replacement; ttt: Dual-State TTT
    mode: str = "joint"  # joint (video + actions), fast (Fast-WAM), two_stage (CLWM)
    scheduler: str = "async"  # sync, async, or sai (speculative asynchronous inference)
    flow_steps: int = 4  # flow-matching integration steps per chunk
    noise_scale: float = -1.0  # flow starting-noise scale; < 0: the checkpoint's
    # sai: share of the flow ODE integrated speculatively, on the surrogate context, before the
    # real observation arrives (Policy.speculate); the rest runs once it is there
    sai_s_mid: float = 0.5
    # async / sai: the new chunk's actions up to its expected arrival are inpainted with the
    # chunk the arm still executes (real-time chunking's frozen prefix)
    inpaint_prefix: bool = False
    task: str = ""  # instruction given to the policy with every observation
    execute_steps: int = 0  # sync: actions executed before re-planning (0 = whole chunk)
    latency_margin_s: float = 0.1  # async: start inference this much before it is needed
    # async / sai plan ahead by the expected latency + hand-off + this many of their mean
    # deviations (runtime/chunk_runner.py)
    latency_deviations: float = 0.0
    # async / sai: a chunk that arrives after the plan ran out adds its lateness to how far
    # ahead they plan; each chunk on time takes a tenth of that away (runtime/chunk_runner.py)
    late_feedback: bool = True
    max_observation_age_s: float = 0.5  # older observations are not used for inference
    # observations stamped more than this ahead of the node's clock are refused
    max_future_s: float = 0.5
    # no observation for this long: the observation input is dead (ERROR in /diagnostics)
    input_dead_after_s: float = 1.0
    device: str = "cpu"  # torch device of the model (cpu, cuda, cuda:1)
    # nice value of the inference threads (0: leave them alone): the control path preempts
    # the model instead of queueing behind it (runtime/threads.py)
    inference_nice: int = 10
    # intra-op threads of the backend (ONNX Runtime's pool, torch's); 0: its default (one
    # per core). Fewer leave cores to the control path at the price of model latency.
    inference_threads: int = 0
    # backend remote: the policy server (ws://HOST:PORT or wss://), its convention
    # (config/servers/<name>.yaml or a path; wam_ros: `wam-ros serve`), the seconds a call may
    # take before the arm holds and its answer is dropped, and the environment variable that
    # holds its API key (empty: none)
    server_url: str = ""
    server_mapping: str = "wam_ros"  # backend remote: the server's convention (see server_url)
    server_timeout_s: float = 2.0  # backend remote: seconds a call may take (see server_url)
    server_api_key_env: str = ""  # backend remote: variable holding the API key (server_url)

    def validate(self) -> None:
        n = type(self).__name__
        _check(n, "backend", self.backend, choices=BACKENDS)
        _check(n, "server_timeout_s", self.server_timeout_s, positive=True)
        if self.backend == "remote" and self.scheduler == "sai":
            raise ConfigError(f"{n}.scheduler: got 'sai'; sai needs the model's internals and "
                              "runs only on our WAM; with backend 'remote' allowed: sync, async")
        _check(n, "latency_deviations", self.latency_deviations, minimum=0.0)
        _check(n, "inference_nice", self.inference_nice, minimum=0, maximum=19)
        _check(n, "inference_threads", self.inference_threads, minimum=0, maximum=256)
        _check(n, "memory", self.memory, choices=MEMORIES)
        _check(n, "mode", self.mode, choices=MODES)
        _check(n, "scheduler", self.scheduler, choices=SCHEDULERS)
        _check(n, "flow_steps", self.flow_steps, minimum=1, maximum=64)
        _check(n, "noise_scale", self.noise_scale, maximum=2.0)
        _check(n, "sai_s_mid", self.sai_s_mid, minimum=0.0, maximum=0.95)
        _check(n, "execute_steps", self.execute_steps, minimum=0)
        _check(n, "latency_margin_s", self.latency_margin_s, minimum=0.0)
        _check(n, "max_observation_age_s", self.max_observation_age_s, positive=True)
        _check(n, "max_future_s", self.max_future_s, minimum=0.0)
        _check(n, "input_dead_after_s", self.input_dead_after_s, positive=True)


@dataclass(frozen=True)
class DecoderSettings(_Settings):
    robot: str = "cobot_magic"  # robot config name (config/robots/<robot>.yaml) or a YAML path
    checkpoint: str = ""  # the policy's checkpoint (its latent-action decoder, if any)
    # chunks stamped more than this ahead of the node's clock are refused
    max_future_s: float = 0.5

    def validate(self) -> None:
        _check(type(self).__name__, "max_future_s", self.max_future_s, minimum=0.0)


def policy_overrides(items: list[str], flag: str = "--policy-param") -> dict[str, object]:
    """NAME=VALUE items (a command line's repeated `flag`) -> PolicySettings fields, values
    parsed as YAML scalars (0.5 a float, true a bool); an unknown name or a missing `=` is a
    ConfigError naming the allowed fields."""
    import yaml

    known = {f.name for f in fields(PolicySettings)}
    params: dict[str, object] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in known:
            raise ConfigError(f"{flag} {item!r}: expected NAME=VALUE with NAME one of "
                              f"{', '.join(sorted(known))}")
        params[name] = yaml.safe_load(value)
    return params


__all__ = ["BACKENDS", "MEMORIES", "MODES", "RT_PRIORITY_DEFAULT", "RT_PRIORITY_ENV",
           "RT_PRIORITY_MAX", "SCHEDULERS",
           "DecoderSettings", "SmootherSettings", "ObservationSettings", "PolicySettings",
           "policy_overrides"]


@dataclass(frozen=True)
class SmootherSettings(_Settings):
    """The smoother's own parameters; the command pipeline's are the fields of TimelineConfig,
    SmoothingConfig, LimitsConfig and SafetyConfig under timeline., smoothing., limits. and
    safety."""

    robot: str = "cobot_magic"  # robot config name (config/robots/<robot>.yaml) or a YAML path
    # lifecycle: configure and activate (command) at start; false: wait for `ros2 lifecycle set`
    autostart: bool = True
    publish_commanded: bool = True  # /wam/commanded JointState, for plots and tests
    # JointTrajectory points carry the smoothed velocities too (the controller then splines
    # cubically); off: positions only, interpolated linearly, as the teleop node and the
    # simulator's experts command the arm when demonstrations are recorded
    trajectory_velocities: bool = False
    # seconds of the plan ahead each JointTrajectory carries after its first point (the
    # commands the next ticks would send): a late control tick (a loaded CPU) then leaves the
    # arm on the plan instead of stopped at the last command; 0 = one point
    trajectory_preview_s: float = 0.1
    # joint states stamped more than this ahead of the node's clock are refused
    max_future_s: float = 0.5
    # an upstream node (policy, decoder) whose chunk publisher has been gone this long is
    # reported dead (ERROR in /diagnostics) while the arm holds
    upstream_dead_after_s: float = 1.0

    def validate(self) -> None:
        n = type(self).__name__
        _check(n, "trajectory_preview_s", self.trajectory_preview_s, minimum=0.0)
        _check(n, "max_future_s", self.max_future_s, minimum=0.0)
        _check(n, "upstream_dead_after_s", self.upstream_dead_after_s, positive=True)


def settings_from(cls: type, params: dict[str, Any], prefix: str = "", **overrides: Any) -> Any:
    """A settings dataclass from parameter values (`prefix.` selects a group): the one mapping
    of parameters to settings, used by the nodes (nodes/params.declare_settings, with the
    values they declared) and by the simulated stack (with config/wam_ros.yaml's). Lists
    become tuples, integers given for float fields floats; `overrides` win; names the class
    lacks are ignored; the dataclass's validation refuses bad values."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, given in params.items():
        if prefix and not key.startswith(prefix + "."):
            continue
        name = key[len(prefix) + 1:] if prefix else key
        if name not in fields:
            continue
        kind, value = str(fields[name].type), given
        if kind.startswith("tuple") or isinstance(value, list):
            value = tuple(value or ())
        elif kind.startswith("float") and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        values[name] = value
    values.update({k: v for k, v in overrides.items() if k in fields})
    return cls(**values)
