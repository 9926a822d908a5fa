"""The launch files are thin over wam_ros.bringup.graph: run them against stand-in `launch` modules
(the real ones exist only in a full ROS 2 install) and check they start exactly the nodes,
parameters and remappings that the tests start as processes."""

from __future__ import annotations

import importlib.util
import re
import sys
import types
from pathlib import Path

import pytest

from wam_ros.bringup.graph import (
    ARGUMENTS,
    NODE_EXECUTABLES,
    GraphArgs,
    build_graph,
    build_sim_graph,
)

PKG = Path(__file__).resolve().parents[2]


class _Record:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context[self.name]


@pytest.fixture
def fake_launch(monkeypatch):
    mods = {name: types.ModuleType(name) for name in (
        "launch", "launch.actions", "launch.substitutions", "launch_ros", "launch_ros.actions")}
    mods["launch"].LaunchDescription = list
    mods["launch.actions"].DeclareLaunchArgument = type("DeclareLaunchArgument", (_Record,), {})
    mods["launch.actions"].OpaqueFunction = type("OpaqueFunction", (_Record,), {})
    mods["launch.actions"].SetEnvironmentVariable = type("SetEnvironmentVariable", (_Record,),
                                                         {})
    mods["launch.substitutions"].LaunchConfiguration = _LaunchConfiguration
    mods["launch_ros.actions"].Node = type("Node", (_Record,), {})
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, PKG / "launch" / f"{name}.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def _run(description, **overrides):
    declared = {e.kwargs["name"] if "name" in e.kwargs else e.args[0]: e for e in description
                if type(e).__name__ == "DeclareLaunchArgument"}
    context = {name: e.kwargs["default_value"] for name, e in declared.items()}
    context.update(overrides)
    (opaque,) = [e for e in description if type(e).__name__ == "OpaqueFunction"]
    actions = opaque.kwargs["function"](context)
    return declared, [a for a in actions if type(a).__name__ == "Node"]


@pytest.mark.parametrize("launch_file, builder, robot", [
    ("cobot_magic", build_graph, "cobot_magic"),
    ("agibot_g1", build_graph, "agibot_g1"),
    ("sim", build_sim_graph, "cobot_magic"),
])
def test_launch_file_starts_exactly_the_graph(fake_launch, launch_file, builder, robot):
    description = _load(launch_file)
    declared, nodes = _run(description, scheduler="sai", memory="ttt")
    assert set(declared) == set(ARGUMENTS)
    for name, e in declared.items():
        assert e.kwargs["description"], f"launch argument {name} lacks a description"
    assert declared["robot"].kwargs["default_value"] == robot

    values = {k: e.kwargs["default_value"] for k, e in declared.items()}
    values.update(scheduler="sai", memory="ttt")
    expected = builder(GraphArgs.from_strings(values))
    assert [n.kwargs["name"] for n in nodes] == [s.name for s in expected]
    for node, spec in zip(nodes, expected):
        assert node.kwargs["package"] == "wam_ros"
        assert node.kwargs["executable"] == spec.executable
        assert node.kwargs["parameters"] == [*spec.params_files, spec.parameters]
        assert node.kwargs["remappings"] == list(spec.remappings)
    # supervision: the stateless nodes come back after a short delay; the policy and the
    # smoother hold state (memory, the plan, a latched stop) and are not silently restarted
    respawned = {n.kwargs["name"]: n.kwargs["respawn_delay"] for n in nodes
                 if n.kwargs["respawn"]}
    assert respawned == {"wam_observation": 1.0, "wam_decoder": 1.0}
    policy = next(n for n in nodes if n.kwargs["name"] == "wam_policy")
    assert policy.kwargs["parameters"][-1]["scheduler"] == "sai"
    assert policy.kwargs["parameters"][-1]["memory"] == "ttt"
    if launch_file == "sim":
        # the simulator publishes /clock on its own time; everything else runs on it
        assert nodes[0].kwargs["executable"] == "wam_sim_node"
        assert all(n.kwargs["parameters"][-1]["use_sim_time"] is True for n in nodes[1:])
        assert policy.kwargs["parameters"][-1]["task"].startswith("pick up")


def test_every_executable_is_a_console_script_with_a_main():
    setup_py = (PKG / "setup.py").read_text()
    scripts = dict(re.findall(r'"([\w-]+) = ([\w.]+):main"', setup_py))
    assert scripts.get("wam-ros") == "wam_ros.cli"
    for executable, module in NODE_EXECUTABLES.items():
        assert scripts.get(executable) == module, f"{executable} missing from setup.py"
        assert importlib.util.find_spec(module) is not None, module


def test_process_command_line_carries_the_same_parameters():
    (policy,) = [n for n in build_graph(GraphArgs(scheduler="sai", checkpoint=""))
                 if n.name == "wam_policy"]
    cmd = policy.command("python")
    assert cmd[:3] == ["python", "-m", "wam_ros.nodes.policy_node"]
    assert "__node:=wam_policy" in cmd and "scheduler:=sai" in cmd
    assert 'checkpoint:=""' in cmd  # an empty string must stay a string for rcl's YAML parser
    assert cmd[cmd.index("--params-file") + 1].endswith("config/wam_ros.yaml")


def test_bad_launch_argument_is_refused():
    with pytest.raises(ValueError, match="use_sim_time: got 'maybe'; allowed: true, false"):
        GraphArgs.from_strings({"use_sim_time": "maybe"})
    for value in ("100", "-1", "high", ""):
        with pytest.raises(ValueError, match="realtime_priority: got .*; allowed: 0 .* 1..99"):
            GraphArgs.from_strings({"realtime_priority": value})


@pytest.mark.parametrize("composed", [False, True])
def test_realtime_priority_reaches_every_process_of_the_graph(fake_launch, composed):
    """realtime_priority:=N: every process of the graph gets WAM_ROS_RT_PRIORITY=N (read
    before rclpy starts a thread); by default the launch files' priority, below ros2_control's
    controller manager (50); 0: nothing is added."""
    from wam_ros.core.settings import RT_PRIORITY_DEFAULT, RT_PRIORITY_ENV

    assert 0 < RT_PRIORITY_DEFAULT < 50
    description = _load("cobot_magic")
    composed_value = "true" if composed else "false"
    count = 1 if composed else 4
    _, nodes = _run(description, composed=composed_value)
    assert [n.kwargs["additional_env"] for n in nodes] == [
        {RT_PRIORITY_ENV: str(RT_PRIORITY_DEFAULT)}] * count
    _, nodes = _run(description, composed=composed_value, realtime_priority="0")
    assert [n.kwargs["additional_env"] for n in nodes] == [None] * count
    _, nodes = _run(description, composed=composed_value, realtime_priority="20")
    assert [n.kwargs["additional_env"] for n in nodes] == [{RT_PRIORITY_ENV: "20"}] * count
    specs = build_graph(GraphArgs.from_strings({"realtime_priority": "20",
                                                "composed": composed_value}))
    assert all(s.env == {RT_PRIORITY_ENV: "20"} for s in specs)


def test_a_task_with_a_shipped_checkpoint_gets_it(monkeypatch, tmp_path):
    from wam_ros import paths
    from wam_ros.bringup import graph

    monkeypatch.setattr(paths, "checkpoints_dir", lambda: tmp_path)
    for name in ("cobot_magic", "cobot_magic_handover"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text("format: wam_ros.checkpoint\n")
    (tmp_path / "agibot_g1").mkdir()
    (tmp_path / "agibot_g1" / "config.yaml").write_text("format: wam_ros.checkpoint\n")
    assert paths.default_checkpoint("cobot_magic", "handover") == tmp_path / "cobot_magic_handover"
    assert paths.default_checkpoint("cobot_magic", "pick_place") == tmp_path / "cobot_magic"
    assert paths.default_checkpoint("agibot_g1", "handover") == tmp_path / "agibot_g1"
    assert paths.task_checkpoint("cobot_magic", "handover") == tmp_path / "cobot_magic_handover"
    assert paths.task_checkpoint("agibot_g1", "handover") is None
    assert paths.task_checkpoint("cobot_magic", "") is None
    assert paths.resolve_checkpoint("", "cobot_magic", "handover").name == "cobot_magic_handover"

    def checkpoints(robot, task, checkpoint=""):
        nodes = graph.build_sim_graph(GraphArgs(robot=robot, task=task, checkpoint=checkpoint))
        return {n.name: n.parameters.get("checkpoint") for n in nodes
                if n.name in ("wam_policy", "wam_decoder")}

    # the simulated task's own checkpoint reaches the policy and the decoder alike
    assert checkpoints("cobot_magic", "handover") == {
        "wam_policy": str(tmp_path / "cobot_magic_handover"),
        "wam_decoder": str(tmp_path / "cobot_magic_handover")}
    # none shipped for the task, or none asked for: the nodes resolve the robot's default
    assert set(checkpoints("agibot_g1", "handover").values()) == {""}
    assert set(checkpoints("cobot_magic", "pick_place").values()) == {""}
    # a checkpoint given is always the one used
    assert set(checkpoints("cobot_magic", "handover", "/x/mine").values()) == {"/x/mine"}


def test_every_shipped_checkpoint_is_for_its_robot_and_task():
    from wam_ros.model.checkpoint import read_checkpoint_config
    from wam_ros.paths import checkpoints_dir
    from wam_ros.sim.tasks import TASKS

    shipped = sorted(p for p in checkpoints_dir().iterdir() if p.is_dir())
    assert {p.name for p in shipped} >= {"cobot_magic", "agibot_g1"}
    for path in shipped:
        model, _ = read_checkpoint_config(path)
        assert path.name.startswith(model.robot), (path.name, model.robot)
        task = path.name[len(model.robot) + 1:]  # <robot> or <robot>_<task>
        assert task == "" or task in TASKS, f"{path.name}: {task!r} is not a simulated task"
        size_mb = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
        assert size_mb < 25.0, (path.name, size_mb)
        assert not any(f.suffix in (".pt", ".pth", ".pkl", ".ckpt") for f in path.rglob("*"))
