"""`wam-ros record`: teleoperated episodes to rosbag2 (MCAP), one bag per episode.

    wam-ros record --robot cobot_magic --out episodes --task "stack the cups"
        recorder only: the leader arms, cameras and follower are the real robot's; control
        episodes with the keys shown (keyboard or foot pedal) or the /wam/record/* services
    wam-ros record --sim fake --teleop keyboard
        no hardware: the kinematic fake robot, and you drive the leader arms from the keyboard
    wam-ros record --sim fake --teleop scripted --episodes 10 --seconds 20
        ten 20 s episodes of a scripted operator (a new seed each), then exit
    wam-ros record --sim mujoco --sim-task pick_place --teleop keyboard
        the MuJoCo simulator (rendered cameras, physics; everything on its /clock)
    wam-ros record --sim mujoco --teleop expert --episodes 5 --seconds 12
        the simulator's scripted expert is the operator: each episode resets the scene (seed
        --seed, +1 per episode), and the sim's success detection marks the episode

All nodes run composed in this process; `ros2 run wam_ros wam_recorder_node` (and
wam_teleop_node) start them separately with the same parameters.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("record", help="record teleoperated episodes to rosbag2 (MCAP)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--robot", default="cobot_magic", help="robot config name or YAML path")
    p.add_argument("--out", default="episodes", help="directory of episode bags")
    p.add_argument("--task", default="", help="task (language instruction) of the episodes")
    p.add_argument("--note", default="", help="operator note stored with each episode")
    p.add_argument("--flush-interval", type=float, default=1.0,
                   help="seconds between closed segments: the most a crash loses (default 1)")
    p.add_argument("--min-free-mb", type=float, default=2048.0,
                   help="refuse to start an episode with less free disk space (MiB)")
    p.add_argument("--teleop", default="none",
                   help="none (real leader arms) | scripted | keyboard | "
                        "package.module:Factory | expert (--sim mujoco: the task's scripted "
                        "expert)")
    p.add_argument("--sim", choices=("none", "fake", "mujoco"), default="none",
                   help="fake: the kinematic fake robot stands in for the hardware; mujoco: "
                        "the MuJoCo simulator")
    p.add_argument("--sim-task", default="pick_place", help="--sim mujoco: the scene's task")
    p.add_argument("--camera-scale", type=float, default=1.0,
                   help="--sim fake: camera size relative to the robot config's")
    p.add_argument("--episodes", type=int, default=0,
                   help="record this many episodes of --seconds each, then exit (0: by hand)")
    p.add_argument("--seconds", type=float, default=20.0, help="episode length with --episodes")
    p.add_argument("--seed", type=int, default=0, help="scripted operator seed (+1 per episode)")
    p.add_argument("--extra-topic", action="append", default=[],
                   help="another topic to record: /name or /name:package/msg/Type")
    p.add_argument("--autostart", action="store_true", help="start the first episode at once")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rclpy.parameter import Parameter

    from wam_ros.core.config import ConfigError
    from wam_ros.core.robot import RobotSpec
    from wam_ros.nodes.common import run_nodes

    try:
        RobotSpec.load(args.robot)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    batch = args.episodes > 0
    if args.teleop == "expert" and (args.sim != "mujoco" or not batch):
        print("error: --teleop expert needs --sim mujoco and --episodes N (the expert resets "
              "the simulator for each episode)", file=sys.stderr)
        return 2

    def params(**values: Any) -> list[Parameter]:
        out = []
        for k, v in values.items():
            if isinstance(v, (list, tuple)):
                if v:  # an empty list would not be typed as a string array
                    out.append(Parameter(k, Parameter.Type.STRING_ARRAY, list(v)))
            else:
                out.append(Parameter(k, value=v))
        return out

    factories = []
    sim_time = args.sim == "mujoco"  # the simulator's /clock drives every node
    sim_holder: list[Any] = []
    if args.sim == "mujoco":
        from wam_ros.nodes.sim_node import SimNode

        def make_sim() -> Any:
            node = SimNode(parameter_overrides=params(
                robot=args.robot, task=args.sim_task, seed=args.seed))
            sim_holder.append(node)
            return node

        factories.append(make_sim)
    if args.sim == "fake":
        from wam_ros.nodes.fake_robot import FakeRobotNode

        factories.append(lambda: FakeRobotNode(parameter_overrides=params(
            robot=args.robot, camera_scale=args.camera_scale)))
    teleop_holder: list[Any] = []
    if args.teleop != "none":
        from wam_ros.nodes.teleop_node import TeleopNode

        def make_teleop() -> Any:
            operator = _expert_operator(sim_holder[0]) if args.teleop == "expert" else None
            name = "wam_ros.sim.expert_rollout:ExpertOperator" if operator else args.teleop
            node = TeleopNode(operator, parameter_overrides=params(
                robot=args.robot, operator=name, seed=args.seed,
                drive_follower=args.sim != "none", use_sim_time=sim_time))
            teleop_holder.append(node)
            return node

        factories.append(make_teleop)
    from wam_ros.nodes.recorder_node import RecorderNode

    def make_recorder() -> Any:
        task = args.task
        if not task and sim_holder:  # the simulated task's instruction, as the model sees it
            task = sim_holder[0].sim.task.instruction
        node = RecorderNode(parameter_overrides=params(
            robot=args.robot, output_dir=args.out, task=task, note=args.note,
            flush_interval_s=args.flush_interval, min_free_mb=args.min_free_mb,
            extra_topics=list(args.extra_topic), autostart=False,
            max_episode_s=args.seconds if batch else 0.0, use_sim_time=sim_time))
        if batch or args.autostart:
            _EpisodeBatch(node, teleop_holder, args.episodes if batch else 1, args.seed,
                          sim_holder[0] if sim_holder else None)
        return node

    factories.append(make_recorder)
    return run_nodes(factories, [sys.argv[0]])


def _expert_operator(sim_node: Any) -> Any:
    """The task's scripted expert as the operator; its episodes reset the sim node's scene."""
    from wam_ros.sim.expert_rollout import ExpertOperator
    from wam_ros.sim.experts import make_expert

    def new_episode(seed: int | None) -> Any:
        result = sim_node.reset_episode(seed)
        if result is None:
            raise RuntimeError("the simulator did not reset within 10 s")
        return result[1]

    return ExpertOperator(make_expert(sim_node.sim), new_episode)


def end_process() -> None:
    from wam_ros.nodes.recorder_node import end_process as end

    end()


class _EpisodeBatch:
    """Starts episodes one after the other (each ends at max_episode_s), restarting the
    operator with a new seed each time, then ends the process. With a simulator, each kept
    episode is marked with the task's success detection at its end."""

    def __init__(self, recorder: Any, teleop: list[Any], episodes: int, seed: int,
                 sim: Any = None) -> None:
        self.recorder, self.teleop, self.sim = recorder, teleop, sim
        self.left, self.seed = episodes, seed
        self.started = False
        self.marked = True
        recorder.create_timer(0.2, self.tick)

    def tick(self) -> None:
        rec = self.recorder.recorder
        if rec.recording:
            return
        if not self.marked and self.sim is not None and not rec.error:
            status = self.sim.last_status
            self.recorder.get_logger().info(
                f"episode of seed {status.seed}: {status.phase}, "
                f"{'success' if status.success else 'failure'}")
            rec.mark(bool(status.success))
        self.marked = True
        if self.started and rec.error:
            self.recorder.get_logger().error(f"batch stopped: {rec.error}")
            self.left = 0
        if self.left <= 0:
            end_process()
            return
        # wait for data before starting: the first follower state moves the operator
        if self.teleop and getattr(self.teleop[0], "follower", None) is None:
            return
        for node in self.teleop:
            reset = getattr(node.operator, "reset", None)
            if reset is not None and node.follower is not None:
                try:
                    reset(node.follower, seed=self.seed)
                except TypeError:
                    reset(node.follower)
            node.t0 = None
        ok, message = self.recorder.start_episode()
        if not ok:
            self.recorder.get_logger().error(f"batch stopped: {message}")
            self.left = 0
            return
        self.started = True
        self.marked = False
        self.left -= 1
        self.seed += 1
