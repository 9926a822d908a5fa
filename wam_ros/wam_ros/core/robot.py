"""Robot descriptions: `RobotSpec` loads and validates config/robots/<name>.yaml.

The spec is the single source of truth for joint names, limits, grippers, cameras, controllers,
the action layout and the home pose. Action vectors follow `action_layout`; gripper entries in an
action are normalised (0 = closed, 1 = fully open) and mapped to joint units per robot here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wam_ros.core.config import ConfigError, Section, load_yaml

CONTROLLER_TYPES = ("joint_trajectory", "forward_command")
CAMERA_ENCODINGS = ("rgb8", "bgr8", "mono8", "jpeg", "png")
TELEOP_TYPES = {"joint_state": "sensor_msgs/msg/JointState",
                "joint_trajectory": "trajectory_msgs/msg/JointTrajectory"}
TELEOP_SPACES = ("absolute", "delta")


@dataclass(frozen=True)
class JointLimits:
    lower: float
    upper: float
    velocity: float  # rad/s (m/s for prismatic)
    acceleration: float  # rad/s^2


@dataclass(frozen=True)
class Gripper:
    joint: str
    open: float  # joint position of a fully open gripper
    closed: float  # joint position of a closed gripper
    mimic_joints: tuple[str, ...] = ()

    def to_joint(self, normalised: np.ndarray | float) -> np.ndarray | float:
        """Action value (0 closed .. 1 open) -> joint position."""
        return self.closed + np.clip(normalised, 0.0, 1.0) * (self.open - self.closed)

    def to_normalised(self, position: np.ndarray | float) -> np.ndarray | float:
        return np.clip((position - self.closed) / (self.open - self.closed), 0.0, 1.0)


@dataclass(frozen=True)
class Arm:
    name: str
    joints: tuple[str, ...]
    gripper: Gripper | None


@dataclass(frozen=True)
class Camera:
    name: str
    topic: str
    width: int
    height: int
    rate_hz: float
    encoding: str  # rgb8 | bgr8 | mono8 (sensor_msgs/Image) or jpeg | png (CompressedImage)

    @property
    def compressed(self) -> bool:
        return self.encoding in ("jpeg", "png")


@dataclass(frozen=True)
class Controller:
    name: str
    type: str  # joint_trajectory | forward_command
    joints: tuple[str, ...]

    @property
    def topic(self) -> str:
        suffix = "joint_trajectory" if self.type == "joint_trajectory" else "commands"
        return f"/{self.name}/{suffix}"


@dataclass(frozen=True)
class TeleopSource:
    """One operator command topic (a leader arm, or any command stream) recorded as the action.

    Entry i of a message named `names[i]` drives our joint `joints[i]`, in joint units:
    value = scale[i] * message value (space absolute), or follower position + scale[i] *
    message value (space delta). joint_trajectory messages count by their first point.
    """

    name: str
    topic: str
    type: str  # joint_state | joint_trajectory
    space: str  # absolute | delta
    names: tuple[str, ...]
    joints: tuple[str, ...]
    scale: tuple[float, ...]

    @property
    def msgtype(self) -> str:
        return TELEOP_TYPES[self.type]


@dataclass(frozen=True)
class TeleopSpec:
    sources: tuple[TeleopSource, ...]

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(s.topic for s in self.sources)


@dataclass(frozen=True)
class RobotSpec:
    name: str
    description: str
    source: Path  # the YAML file this spec came from
    urdf: Path
    action_rate_hz: float
    control_rate_hz: float
    # time_from_start of the first point of a streamed JointTrajectory (smoother, teleop, the
    # simulator's experts): how long the controller takes to reach each command
    trajectory_lead_s: float
    joint_state_topic: str
    joints: dict[str, JointLimits]
    arms: tuple[Arm, ...]
    cameras: tuple[Camera, ...]
    controllers: tuple[Controller, ...]
    action_layout: tuple[str, ...]
    home: dict[str, float]
    fixed_joints: dict[str, float] = field(default_factory=dict)
    # rate the robot publishes joint states at (0: not known): below it /diagnostics warns
    joint_state_rate_hz: float = 0.0
    teleop: TeleopSpec | None = None  # the operator's command topics (recording)

    # ---- derived views (cheap, computed on demand) -------------------------------------
    @property
    def action_dim(self) -> int:
        return len(self.action_layout)

    @property
    def action_dt(self) -> float:
        return 1.0 / self.action_rate_hz

    @property
    def grippers(self) -> dict[str, Gripper]:
        return {a.gripper.joint: a.gripper for a in self.arms if a.gripper is not None}

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    def gripper_mask(self) -> np.ndarray:
        """Boolean (D,) mask of action entries that are grippers."""
        grippers = self.grippers
        return np.array([j in grippers for j in self.action_layout], dtype=bool)

    def limits_array(self, attr: str) -> np.ndarray:
        """(D,) array of a JointLimits attribute in action-layout order (joint units)."""
        return np.array([getattr(self.joints[j], attr) for j in self.action_layout])

    def home_vector(self) -> np.ndarray:
        """Home pose in joint units, action-layout order."""
        return np.array([self.home[j] for j in self.action_layout])

    def action_to_joint(self, action: np.ndarray) -> np.ndarray:
        """(..., D) action (grippers normalised) -> joint positions (joint units)."""
        out = np.array(action, dtype=np.float64, copy=True)
        for i, j in enumerate(self.action_layout):
            if j in self.grippers:
                out[..., i] = self.grippers[j].to_joint(out[..., i])
        return out

    def joint_to_action(self, positions: np.ndarray) -> np.ndarray:
        """(..., D) joint positions in action-layout order -> action (grippers normalised)."""
        out = np.array(positions, dtype=np.float64, copy=True)
        for i, j in enumerate(self.action_layout):
            if j in self.grippers:
                out[..., i] = self.grippers[j].to_normalised(out[..., i])
        return out

    def controller_of(self, joint: str) -> Controller:
        for c in self.controllers:
            if joint in c.joints:
                return c
        raise KeyError(joint)

    # ---- loading -----------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> RobotSpec:
        path = Path(path).resolve()
        return _parse(Section(load_yaml(path), path), path)

    @classmethod
    def load(cls, name_or_path: str | Path) -> RobotSpec:
        """A robot by name (config/robots/<name>.yaml) or by path to a YAML file."""
        from wam_ros.paths import robots_dir

        candidate = Path(name_or_path)
        if candidate.suffix in (".yaml", ".yml"):
            return cls.from_yaml(candidate)
        path = robots_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"unknown robot {str(name_or_path)!r}; allowed: {', '.join(available_robots())}"
            )
        return cls.from_yaml(path)


def available_robots() -> list[str]:
    from wam_ros.paths import robots_dir

    return sorted(p.stem for p in robots_dir().glob("*.yaml"))


def _repeated(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted."""
    return sorted(name for name, n in Counter(names).items() if n > 1)


def _find_urdf(rel: str, yaml_path: Path) -> Path | None:
    """An absolute path, or one relative to the YAML file or to the package share directory."""
    from wam_ros.paths import share_dir

    for base in (yaml_path.parent, share_dir()):
        candidate = (base / rel).resolve()
        if candidate.is_file():
            return candidate
    return None


def _parse(top: Section, path: Path) -> RobotSpec:
    name = top.str("name")
    description = top.str("description", "")
    urdf_rel = top.str("urdf")
    urdf = _find_urdf(urdf_rel, path)
    if urdf is None:
        raise top.error("urdf", f"file {urdf_rel!r} not found next to the YAML file or in the "
                        "package's share directory")
    action_rate = top.float("action_rate_hz", min=0.0, min_exclusive=True, max=1000.0)
    control_rate = top.float("control_rate_hz", min=0.0, min_exclusive=True, max=2000.0)
    # default: one action period (never under a control period: the arm would stop between
    # commands)
    lead = top.float("trajectory_lead_s", 1.0 / min(action_rate, control_rate),
                     min=1.0 / control_rate, max=1.0)
    joint_state_topic = top.str("joint_state_topic", "/joint_states")
    joint_state_rate = top.float("joint_state_rate_hz", 0.0, min=0.0, max=10000.0)

    joints: dict[str, JointLimits] = {}
    for jname, sec in top.sections("joints").items():
        lim = JointLimits(
            lower=sec.float("lower"),
            upper=sec.float("upper"),
            velocity=sec.float("velocity", min=0.0, min_exclusive=True),
            acceleration=sec.float("acceleration", min=0.0, min_exclusive=True),
        )
        if lim.lower >= lim.upper:
            raise sec.error("upper", f"got {lim.upper!r}; allowed: > lower ({lim.lower!r})")
        sec.finish()
        joints[jname] = lim
    known = list(joints)

    arms = []
    for arm_name, sec in top.sections("arms").items():
        arm_joints = sec.str_list("joints", allowed=known)
        gripper = None
        if sec.has("gripper"):
            g = sec.section("gripper")
            gj = g.choice("joint", known)
            lim = joints[gj]
            gripper = Gripper(
                joint=gj,
                open=g.float("open", lim.upper, min=lim.lower, max=lim.upper),
                closed=g.float("closed", lim.lower, min=lim.lower, max=lim.upper),
                mimic_joints=g.str_list("mimic_joints", ()),
            )
            if gripper.open == gripper.closed:
                raise g.error("open", f"got {gripper.open!r}; allowed: any value but closed")
            g.finish()
        else:
            sec.raw("gripper", None)
        sec.finish()
        arms.append(Arm(arm_name, arm_joints, gripper))
    if not arms:
        raise top.error("arms", "at least one arm is required")
    commanded = [j for a in arms for j in a.joints] + [
        a.gripper.joint for a in arms if a.gripper is not None
    ]
    dupes = _repeated(commanded)
    if dupes:
        raise top.error("arms", f"joints {dupes} belong to more than one arm or gripper")
    unused = [j for j in known if j not in commanded]
    if unused:
        raise top.error("joints", f"joints {unused} are not part of any arm or gripper")

    cameras = []
    for cam_name, sec in top.sections("cameras").items():
        cameras.append(
            Camera(
                name=cam_name,
                topic=sec.str("topic"),
                width=sec.int("width", min=1),
                height=sec.int("height", min=1),
                rate_hz=sec.float("rate_hz", min=0.0, min_exclusive=True),
                encoding=sec.choice("encoding", CAMERA_ENCODINGS),
            )
        )
        sec.finish()
    if not cameras:
        raise top.error("cameras", "at least one camera is required")

    controllers = []
    for c_name, sec in top.sections("controllers").items():
        controllers.append(
            Controller(c_name, sec.choice("type", CONTROLLER_TYPES),
                       sec.str_list("joints", allowed=commanded))
        )
        sec.finish()
    owned = [j for c in controllers for j in c.joints]
    missing = [j for j in commanded if j not in owned]
    twice = _repeated(owned)
    if missing:
        raise top.error("controllers", f"joints {missing} have no controller")
    if twice:
        raise top.error("controllers", f"joints {twice} are claimed by more than one controller")

    layout = top.str_list("action_layout", allowed=commanded)
    if len(layout) != len(commanded):
        missing = [j for j in commanded if j not in layout]
        raise top.error("action_layout", f"joints {missing} are missing from the action")

    home_sec = top.section("home")
    home = {}
    for j in commanded:
        lim = joints[j]
        home[j] = home_sec.float(j, min=lim.lower, max=lim.upper)
    home_sec.finish()

    fixed_sec = top.section("fixed_joints", {})
    fixed = {k: fixed_sec.float(k) for k in fixed_sec.data}
    overlap = sorted(set(fixed) & set(commanded))
    if overlap:
        raise top.error("fixed_joints", f"joints {overlap} are also commanded")
    fixed_sec.finish()
    teleop = _parse_teleop(top.section("teleop"), commanded) if top.has("teleop") else None
    top.raw("teleop", None)
    top.finish()

    return RobotSpec(
        name=name, description=description, source=path, urdf=urdf,
        action_rate_hz=action_rate, control_rate_hz=control_rate, trajectory_lead_s=lead,
        joint_state_topic=joint_state_topic, joint_state_rate_hz=joint_state_rate,
        joints=joints, arms=tuple(arms),
        cameras=tuple(cameras), controllers=tuple(controllers), action_layout=layout,
        home=home, fixed_joints=fixed, teleop=teleop,
    )


def _parse_teleop(sec: Section, commanded: list[str]) -> TeleopSpec:
    """`teleop.leaders.<name>`: topic, type, space, joints (message name -> our joint, or a list
    of our joint names used as they are; default: every commanded joint), scale."""
    sources, covered = [], []
    for src_name, s in sec.sections("leaders").items():
        if s.has("joints") and isinstance(s.data["joints"], dict):
            mapping = s.section("joints")
            names = tuple(mapping.data)
            joints = tuple(mapping.choice(n, commanded) for n in names)
            mapping.finish()
        else:
            joints = s.str_list("joints", tuple(commanded), allowed=commanded)
            names = joints
        scale_sec = s.section("scale", {})
        scale = []
        for n in names:
            value = scale_sec.float(n, 1.0)
            if value == 0.0:
                raise scale_sec.error(n, "got 0.0; allowed: any finite value but 0")
            scale.append(value)
        scale_sec.finish()
        sources.append(TeleopSource(src_name, s.str("topic"), s.choice("type", TELEOP_TYPES),
                                    s.choice("space", TELEOP_SPACES, "absolute"), names, joints,
                                    tuple(scale)))
        s.finish()
        covered += joints
    sec.finish()
    if not sources:
        raise sec.error("leaders", "at least one leader (command topic) is required")
    twice = _repeated(covered)
    if twice:
        raise sec.error("leaders", f"joints {twice} are driven by more than one leader")
    missing = [j for j in commanded if j not in covered]
    if missing:
        raise sec.error("leaders", f"joints {missing} are driven by no leader")
    topics = [s.topic for s in sources]
    if len(set(topics)) != len(topics):
        raise sec.error("leaders", f"two leaders share a topic: {topics}")
    return TeleopSpec(tuple(sources))


__all__ = [
    "Arm", "Camera", "ConfigError", "Controller", "Gripper", "JointLimits", "RobotSpec",
    "TeleopSource", "TeleopSpec", "available_robots",
]
