"""The node graph, described once in plain Python.

`ros2 launch` (launch/*.launch.py, through wam_ros.bringup.launch_support) and the tests
(which start the same nodes as processes) both build their nodes from `build_graph`, so what
runs on the robot is exactly what the tests exercise.

No rclpy here: the description is data (names, executables, parameters, remappings).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field, fields, replace

from wam_ros.core.settings import (
    BACKENDS,
    MEMORIES,
    MODES,
    RT_PRIORITY_DEFAULT,
    RT_PRIORITY_ENV,
    RT_PRIORITY_MAX,
    SCHEDULERS,
    PolicySettings,
)
from wam_ros.dds import profile_environment
from wam_ros.paths import config_dir, task_checkpoint

PACKAGE = "wam_ros"

# Launch arguments: name -> (default, description). Both launch files and `wam-ros graph`
# expose exactly these.
ARGUMENTS: dict[str, tuple[str, str]] = {
    "robot": ("cobot_magic", "robot config name (config/robots/<robot>.yaml) or a YAML path"),
    "checkpoint": ("", "policy checkpoint directory; empty = the shipped default for the robot "
                       "(sim.launch.py: for the simulated task where one is shipped for it)"),
    "backend": (PolicySettings.backend,
                f"inference backend: {' | '.join(BACKENDS)} (remote: a policy server: "
                "server_url, server_mapping in params_file)"),
    "memory": (PolicySettings.memory,
               f"policy memory: {' | '.join(MEMORIES)} (kv: KV cache with observation "
               "replacement)"),
    "scheduler": (PolicySettings.scheduler,
                  f"chunk scheduler: {' | '.join(SCHEDULERS)} (sai: speculative)"),
    "mode": (PolicySettings.mode, f"inference mode: {' | '.join(MODES)}"),
    "use_sim_time": ("false", "take time from /clock (simulator or bag replay)"),
    "task": ("", "instruction given to the policy; sim.launch.py: a simulated task "
                 "(pick_place | handover), whose instruction the policy then gets"),
    "params_file": ("", "extra ros__parameters YAML applied after config/wam_ros.yaml"),
    "composed": ("false", "run the four nodes in one process (wam_bringup) that hands "
                          "observations and chunks over in memory; false: one process each"),
    "autostart": ("true", "bring the managed nodes to active at start (policy: load and warm "
                          "up the model, then plan; smoother: command); false: they wait for "
                          "`ros2 lifecycle set` (configure, activate)"),
    "namespace": ("", "ROS namespace of the graph (e.g. robot1): its topics and services, and "
                      "the robot's, resolve in it, so robots can share one DDS domain"),
    "realtime_priority": (str(RT_PRIORITY_DEFAULT),
                          f"1..{RT_PRIORITY_MAX}: the nodes' control path (executors, DDS "
                          "threads) runs SCHED_FIFO at this priority, ahead of anything at "
                          "normal priority; the policy's inference threads and its model "
                          "loading stay normal (niced). Keep it below ros2_control's "
                          "controller manager (50). Needs the rtprio limit (limits.conf) or "
                          "CAP_SYS_NICE; without it the nodes say so and run at normal "
                          "priority. 0: normal scheduling"),
}


@dataclass(frozen=True)
class GraphArgs:
    robot: str = "cobot_magic"
    checkpoint: str = ""
    backend: str = PolicySettings.backend
    memory: str = PolicySettings.memory
    scheduler: str = PolicySettings.scheduler
    mode: str = PolicySettings.mode
    use_sim_time: bool = False
    params_file: str = ""
    composed: bool = False
    task: str = ""
    namespace: str = ""
    autostart: bool = True
    realtime_priority: int = RT_PRIORITY_DEFAULT

    @classmethod
    def from_strings(cls, values: dict[str, str]) -> GraphArgs:
        """Launch arguments arrive as strings."""
        kwargs: dict[str, object] = {}
        for f in fields(cls):
            if f.name not in values:
                continue
            v = values[f.name]
            if f.name in ("use_sim_time", "composed", "autostart"):
                if str(v).lower() not in ("true", "false", "1", "0"):
                    raise ValueError(f"{f.name}: got {v!r}; allowed: true, false")
                kwargs[f.name] = str(v).lower() in ("true", "1")
            elif f.name == "realtime_priority":
                text = str(v).strip()
                if not (text.isdigit() and int(text) <= RT_PRIORITY_MAX):
                    raise ValueError(f"{f.name}: got {v!r}; allowed: 0 (normal scheduling) or "
                                     f"1..{RT_PRIORITY_MAX}")
                kwargs[f.name] = int(text)
            else:
                kwargs[f.name] = str(v)
        return cls(**kwargs)


@dataclass(frozen=True)
class NodeSpec:
    """One node of the graph: what `launch_ros.actions.Node` and a test process both need."""

    name: str
    executable: str  # console script in setup.py (ros2 run wam_ros <executable>)
    module: str  # module with main(); tests run `python -m <module>`
    parameters: dict[str, object] = field(default_factory=dict)
    params_files: tuple[str, ...] = ()
    remappings: tuple[tuple[str, str], ...] = ()
    # False for a process that holds several nodes: each keeps its own name
    rename: bool = True
    namespace: str = ""  # ROS namespace ("" = root)
    # restarted by launch after it exits, this many seconds later (< 0: never). Only nodes
    # that hold no state worth keeping: a restarted observation node or decoder loses a few
    # frames or one chunk, and the smoother holds meanwhile.
    respawn_delay_s: float = -1.0
    # environment the process gets on top of the launch's (launch_ros Node: additional_env)
    env: dict[str, str] = field(default_factory=dict)

    def ros_args(self) -> list[str]:
        args = ["--ros-args"] + (["-r", f"__node:={self.name}"] if self.rename else [])
        if self.namespace:
            args += ["-r", f"__ns:=/{self.namespace.strip('/')}"]
        for path in self.params_files:
            args += ["--params-file", path]
        for key, value in self.parameters.items():
            args += ["-p", f"{key}:={_param_literal(value)}"]
        for src, dst in self.remappings:
            args += ["-r", f"{src}:={dst}"]
        return args

    def command(self, python: str = sys.executable) -> list[str]:
        """Command line that starts this node as its own process."""
        return [python, "-m", self.module, *self.ros_args()]


# executable name -> module; setup.py's console_scripts must list every one of these.
NODE_EXECUTABLES: dict[str, str] = {
    "wam_observation_node": "wam_ros.nodes.observation_node",
    "wam_policy_node": "wam_ros.nodes.policy_node",
    "wam_decoder_node": "wam_ros.nodes.decoder_node",
    "wam_smoother_node": "wam_ros.nodes.smoother_node",
    "wam_bringup": "wam_ros.nodes.bringup",
    "wam_sim_node": "wam_ros.nodes.sim_node",
}


# stateless nodes come back this long after they exited (launch's respawn)
STATELESS_RESPAWN_S = 1.0


def default_params_file() -> str:
    return str(config_dir() / "wam_ros.yaml")


def validate(args: GraphArgs, sim: bool = False) -> None:
    """Check launch arguments before anything starts: a ConfigError with one line naming the
    argument, the value and what is allowed (launch then exits non-zero instead of starting
    a graph with a node that dies)."""
    from wam_ros.core.config import ConfigError
    from wam_ros.core.robot import RobotSpec
    from wam_ros.paths import resolve_checkpoint

    for name, allowed in (("backend", BACKENDS), ("memory", MEMORIES),
                          ("scheduler", SCHEDULERS), ("mode", MODES)):
        value = getattr(args, name)
        if value not in allowed:
            raise ConfigError(f"launch argument {name}:={value}; allowed: {', '.join(allowed)}")
    if args.backend == "remote" and args.scheduler == "sai":
        raise ConfigError("launch argument scheduler:=sai needs our model's internals; with "
                          "backend:=remote allowed: sync, async")
    try:
        robot = RobotSpec.load(args.robot)
    except (ConfigError, FileNotFoundError) as exc:
        raise ConfigError(f"launch argument robot:={args.robot}: {exc}") from exc
    if args.namespace and not all(part.isidentifier() for part in
                                  args.namespace.strip("/").split("/")):
        raise ConfigError(f"launch argument namespace:={args.namespace}; allowed: names of "
                          "letters, digits and underscores (not starting with a digit), "
                          "separated by /")
    if args.params_file and not os.path.isfile(args.params_file):
        raise ConfigError(f"launch argument params_file:={args.params_file}: no such file")
    if args.backend != "remote" and (args.checkpoint or not sim):
        try:
            resolve_checkpoint(args.checkpoint, robot.name)
        except ConfigError as exc:
            raise ConfigError(f"launch argument checkpoint:={args.checkpoint}: {exc}") from exc


def dds_environment() -> dict[str, str]:
    """Environment the launch files set for the nodes: the shipped Fast DDS profile (8 MiB
    shared memory for raw camera frames, UDP on loopback), unless the user chose a profile,
    under the variable name the installed Fast DDS reads (Humble/Jazzy: FASTRTPS_...)."""
    return profile_environment(config_dir() / "fastdds.xml")


def realtime_environment(priority: int) -> dict[str, str]:
    """Environment that puts a node process's control path under SCHED_FIFO `priority` (the
    launch argument realtime_priority; 0: none, normal scheduling)."""
    return {RT_PRIORITY_ENV: str(priority)} if priority else {}


def build_graph(args: GraphArgs) -> list[NodeSpec]:
    """The on-robot graph: observation -> policy -> decoder -> smoother -> ros2_control."""
    files = (default_params_file(),) + ((args.params_file,) if args.params_file else ())
    common = {"robot": args.robot, "use_sim_time": args.use_sim_time}

    env = realtime_environment(args.realtime_priority)

    def node(name: str, executable: str, respawn_delay_s: float = -1.0,
             **params: object) -> NodeSpec:
        return NodeSpec(name, executable, NODE_EXECUTABLES[executable],
                        {**common, **params}, files, respawn_delay_s=respawn_delay_s,
                        namespace=args.namespace, env=env)

    policy = {"checkpoint": args.checkpoint, "backend": args.backend, "memory": args.memory,
              "scheduler": args.scheduler, "mode": args.mode, "autostart": args.autostart}
    if args.task:
        policy["task"] = args.task
    if args.composed:  # one process; every node takes the parameters it declares
        return [NodeSpec("wam_bringup", "wam_bringup", NODE_EXECUTABLES["wam_bringup"],
                         {**common, **policy}, files, rename=False, namespace=args.namespace,
                         env=env)]
    return [
        node("wam_observation", "wam_observation_node", respawn_delay_s=STATELESS_RESPAWN_S),
        node("wam_policy", "wam_policy_node", **policy),
        node("wam_decoder", "wam_decoder_node", respawn_delay_s=STATELESS_RESPAWN_S,
             checkpoint=args.checkpoint),
        node("wam_smoother", "wam_smoother_node", autostart=args.autostart),
    ]


def build_sim_graph(args: GraphArgs, sim: dict[str, object] | None = None) -> list[NodeSpec]:
    """The MuJoCo sim node (cameras, joint states, /clock, mock controllers) plus the robot
    graph on sim time, the policy instructed with the simulated task's instruction.

    `args.task` names the simulated task (default pick_place); `sim`: extra sim node
    parameters (seed, camera_width, camera_height, real_time_factor, ...)."""
    from wam_ros.sim.tasks import task_class  # mujoco: only when a sim graph is built

    task = args.task or "pick_place"
    instruction = task_class(task).instruction
    # one shipped for this task; else the nodes resolve the robot's default themselves
    shipped = None if args.checkpoint else task_checkpoint(args.robot, task)
    checkpoint = str(shipped) if shipped else args.checkpoint
    robot_graph = build_graph(replace(args, use_sim_time=True, task=instruction,
                                      checkpoint=checkpoint))
    simulator = NodeSpec("wam_sim", "wam_sim_node", NODE_EXECUTABLES["wam_sim_node"],
                         {"robot": args.robot, "task": task, **(sim or {})},
                         namespace=args.namespace)
    return [simulator, *robot_graph]


def _param_literal(value: object) -> str:
    # `-p name:=value` parses value as YAML: quote strings that would read as another type.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value) if (value == "" or value.lower() in (
            "true", "false", "null", "yes", "no", "on", "off") or _numeric(value)) else value
    return str(value)


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


__all__ = ["ARGUMENTS", "GraphArgs", "NODE_EXECUTABLES", "NodeSpec", "build_graph",
           "build_sim_graph"]
