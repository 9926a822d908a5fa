"""MuJoCo scenes built from our own robot descriptions (urdf/*.urdf + config/robots/*.yaml).

No robot model package works offline, so the URDF is converted here with `mujoco.MjSpec`
(MuJoCo's own URDF import merges the fixed camera frames away and drops mimic joints):

* links -> bodies (the URDF's inertials and primitive collision geometry, coloured by its
  materials); mass-less fixed frames (camera optical frames) fold into their parent;
* revolute / prismatic joints -> hinge / slide joints with the URDF limits; joints the robot
  config holds fixed (G1 head and waist) are baked in at their fixed value;
* `<mimic>` -> a joint equality constraint (second finger follows the first);
* one position actuator per commanded joint (arm gains from the arm's own inertia, force
  limits from the URDF efforts; grippers force-limited like real parallel grippers), gravity
  compensation on the robot (the arms' firmware holds them against gravity);
* fingertip pads (high-friction, torsional friction) on the inner face of every finger, a TCP
  site between the fingertips of each arm;
* a table, the task's objects (a 4 cm cube, a bar, a bin, a target marker) and the robot's
  cameras at the URDF's optical frames.

Rendering is offscreen only; shadows and reflections are off (3-4x cheaper on llvmpipe).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation

from wam_ros.core.robot import RobotSpec

PHYSICS_DT = 0.002  # s: 500 Hz physics
CUBE_HALF = 0.02  # m: a 4 cm cube
BIN_INNER_HALF = 0.06  # m: 12 x 12 cm inside
BIN_WALL_HEIGHT = 0.05
BIN_WALL_HALF_THICK = 0.004

# collision groups: robot geoms touch objects and the table, not each other (the arms' own
# controllers keep them apart; self-contacts of primitive links would only add noise)
ROBOT_CONTYPE, ROBOT_CONAFFINITY = 1, 2
WORLD_CONTYPE, WORLD_CONAFFINITY = 2, 3


@dataclass(frozen=True)
class SceneLayout:
    """Where a robot stands and how its scene is tuned (world frame: z up, floor at 0)."""

    robot_pos: tuple[float, float, float]  # world position of the URDF root link
    table_top: float  # world z of the table surface
    table_center: tuple[float, float]
    table_half: tuple[float, float]
    tcp_offset: tuple[float, float, float]  # grasp point in the gripper base frame
    camera_fovy: dict[str, float]  # vertical field of view per camera, degrees
    gripper_kp: float  # N/m or Nm/rad
    gripper_force: float  # N or Nm: grip force limit
    arm_bandwidth: float = 40.0  # rad/s: natural frequency of each arm joint's servo
    pedestal: bool = False  # a stand under the robot's root link (looks only)
    floor_visible: bool = True


LAYOUTS: dict[str, SceneLayout] = {
    # the arms' mounting plate stands 15 cm above the work table (Mobile ALOHA style; the
    # config's home pose reaches 12 cm below the mounting plane), the table starts in front of
    # it; higher would hide the near half of the workspace from cam_high behind the plate
    "cobot_magic": SceneLayout(
        robot_pos=(0.0, 0.0, 0.90), table_top=0.75, table_center=(0.57, 0.0),
        table_half=(0.31, 0.6), tcp_offset=(0.0, 0.0, -0.085), pedestal=True,
        camera_fovy={"cam_high": 58.0, "cam_left_wrist": 75.0, "cam_right_wrist": 75.0},
        gripper_kp=2000.0, gripper_force=20.0,
    ),
    # G1 stands on the floor in front of a table (top 51 cm below its shoulders)
    "agibot_g1": SceneLayout(
        robot_pos=(0.0, 0.0, 0.0), table_top=0.74, table_center=(0.65, 0.0),
        table_half=(0.33, 0.6), tcp_offset=(0.0, 0.0, -0.12),
        camera_fovy={"head_color": 65.0, "hand_left_color": 75.0, "hand_right_color": 75.0},
        gripper_kp=20.0, gripper_force=1.2,
    ),
}


def layout_for(robot: RobotSpec) -> SceneLayout:
    if robot.name not in LAYOUTS:
        raise ValueError(f"no simulation scene for robot {robot.name!r}; "
                         f"allowed: {', '.join(LAYOUTS)}")
    return LAYOUTS[robot.name]


# ---- small geometry helpers ----------------------------------------------------------------
def rpy_to_quat(rpy: tuple[float, float, float] | np.ndarray) -> np.ndarray:
    """URDF roll-pitch-yaw (fixed axes X, Y, Z) -> MuJoCo quaternion (w, x, y, z)."""
    x, y, z, w = Rotation.from_euler("xyz", rpy).as_quat()
    return np.array([w, x, y, z])


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, np.asarray(a, float), np.asarray(b, float))
    return out


def compose(pos_a, quat_a, pos_b, quat_b) -> tuple[np.ndarray, np.ndarray]:
    """Pose a then pose b (b expressed in a's frame)."""
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, np.asarray(quat_a, float))
    pos = np.asarray(pos_a, float) + rot.reshape(3, 3) @ np.asarray(pos_b, float)
    return pos, quat_mul(quat_a, quat_b)


def _floats(text: str | None, default: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split()) if text else default


# ---- URDF reading ------------------------------------------------------------------------
@dataclass
class _UrdfJoint:
    name: str
    type: str
    parent: str
    child: str
    xyz: tuple[float, ...]
    rpy: tuple[float, ...]
    axis: tuple[float, ...]
    lower: float = 0.0
    upper: float = 0.0
    effort: float = 0.0
    damping: float = 0.0
    friction: float = 0.0
    mimic: tuple[str, float, float] | None = None  # joint, multiplier, offset


@dataclass
class _UrdfLink:
    name: str
    mass: float = 0.0
    inertial_xyz: tuple[float, ...] = (0.0, 0.0, 0.0)
    inertial_rpy: tuple[float, ...] = (0.0, 0.0, 0.0)
    inertia: tuple[float, float, float] = (0.0, 0.0, 0.0)
    geoms: list[tuple[str, tuple[float, ...], tuple[float, ...], tuple[float, ...], str]] = (
        field(default_factory=list))  # (type, size, xyz, rpy, material)


def read_urdf(path) -> tuple[dict[str, _UrdfLink], list[_UrdfJoint], dict[str, tuple]]:
    root = ET.parse(path).getroot()
    materials = {}
    for m in root.iter("material"):
        color = m.find("color")
        if color is not None and m.get("name"):
            materials[m.get("name")] = _floats(color.get("rgba"), (0.6, 0.6, 0.6, 1.0))
    links: dict[str, _UrdfLink] = {}
    for el in root.findall("link"):
        link = _UrdfLink(el.get("name"))
        inertial = el.find("inertial")
        if inertial is not None:
            origin = inertial.find("origin")
            if origin is not None:
                link.inertial_xyz = _floats(origin.get("xyz"), (0.0, 0.0, 0.0))
                link.inertial_rpy = _floats(origin.get("rpy"), (0.0, 0.0, 0.0))
            link.mass = float(inertial.find("mass").get("value"))
            i = inertial.find("inertia")
            link.inertia = (float(i.get("ixx")), float(i.get("iyy")), float(i.get("izz")))
        visual_material = ""
        visual = el.find("visual")
        if visual is not None and visual.find("material") is not None:
            visual_material = visual.find("material").get("name", "")
        for col in el.findall("collision"):
            origin = col.find("origin")
            xyz = _floats(origin.get("xyz") if origin is not None else None, (0.0, 0.0, 0.0))
            rpy = _floats(origin.get("rpy") if origin is not None else None, (0.0, 0.0, 0.0))
            geom = col.find("geometry")[0]
            if geom.tag == "box":
                size = tuple(v / 2 for v in _floats(geom.get("size"), ()))
            elif geom.tag == "cylinder":
                size = (float(geom.get("radius")), float(geom.get("length")) / 2)
            elif geom.tag == "sphere":
                size = (float(geom.get("radius")),)
            else:
                raise ValueError(f"{path}: link {link.name}: unsupported geometry {geom.tag!r} "
                                 "(our URDFs use box, cylinder and sphere)")
            link.geoms.append((geom.tag, size, xyz, rpy, visual_material))
        links[link.name] = link
    joints = []
    for el in root.findall("joint"):
        origin = el.find("origin")
        axis = el.find("axis")
        limit = el.find("limit")
        dyn = el.find("dynamics")
        mimic = el.find("mimic")
        joints.append(_UrdfJoint(
            name=el.get("name"), type=el.get("type"), parent=el.find("parent").get("link"),
            child=el.find("child").get("link"),
            xyz=_floats(origin.get("xyz") if origin is not None else None, (0.0, 0.0, 0.0)),
            rpy=_floats(origin.get("rpy") if origin is not None else None, (0.0, 0.0, 0.0)),
            axis=_floats(axis.get("xyz") if axis is not None else None, (1.0, 0.0, 0.0)),
            lower=float(limit.get("lower", 0)) if limit is not None else 0.0,
            upper=float(limit.get("upper", 0)) if limit is not None else 0.0,
            effort=float(limit.get("effort", 0)) if limit is not None else 0.0,
            damping=float(dyn.get("damping", 0)) if dyn is not None else 0.0,
            friction=float(dyn.get("friction", 0)) if dyn is not None else 0.0,
            mimic=(mimic.get("joint"), float(mimic.get("multiplier", 1)),
                   float(mimic.get("offset", 0))) if mimic is not None else None,
        ))
    return links, joints, materials


# ---- scene building ------------------------------------------------------------------------
_GEOM_TYPES = {"box": mujoco.mjtGeom.mjGEOM_BOX, "cylinder": mujoco.mjtGeom.mjGEOM_CYLINDER,
               "sphere": mujoco.mjtGeom.mjGEOM_SPHERE}


def build_spec(robot: RobotSpec, objects: tuple[str, ...] = ("cube", "bin")) -> mujoco.MjSpec:
    """The full scene (robot, table, task objects, cameras) as an editable MjSpec."""
    layout = layout_for(robot)
    links, joints, materials = read_urdf(robot.urdf)
    spec = mujoco.MjSpec()
    spec.modelname = f"{robot.name}_scene"
    spec.compiler.degree = False
    spec.option.timestep = PHYSICS_DT
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 10.0  # stiffer friction: grasped objects do not creep
    spec.visual.global_.offwidth = 1280
    spec.visual.global_.offheight = 960
    spec.visual.quality.shadowsize = 0
    spec.visual.headlight.ambient = [0.45, 0.45, 0.45]
    spec.visual.headlight.diffuse = [0.35, 0.35, 0.35]
    spec.visual.headlight.specular = [0.0, 0.0, 0.0]

    world = spec.worldbody
    light = world.add_light(name="top", pos=[0.3, 0.0, 3.0], dir=[0.0, 0.0, -1.0])
    light.castshadow = False
    light.diffuse = [0.5, 0.5, 0.5]
    light.type = mujoco.mjtLightType.mjLIGHT_DIRECTIONAL
    if layout.floor_visible:
        world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3, 3, 0.1],
                       rgba=[0.42, 0.44, 0.47, 1], contype=WORLD_CONTYPE,
                       conaffinity=WORLD_CONAFFINITY)
    tx, ty = layout.table_center
    hx, hy = layout.table_half
    world.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_BOX,
                   size=[hx, hy, 0.02], pos=[tx, ty, layout.table_top - 0.02],
                   rgba=[0.72, 0.6, 0.45, 1], contype=WORLD_CONTYPE,
                   conaffinity=WORLD_CONAFFINITY)
    for k, (sx, sy) in enumerate(((1, 1), (1, -1), (-1, 1), (-1, -1))):  # legs (looks only)
        world.add_geom(name=f"table_leg{k}", type=mujoco.mjtGeom.mjGEOM_BOX,
                       size=[0.025, 0.025, (layout.table_top - 0.04) / 2],
                       pos=[tx + sx * (hx - 0.05), ty + sy * (hy - 0.05),
                            (layout.table_top - 0.04) / 2],
                       rgba=[0.5, 0.4, 0.3, 1], contype=0, conaffinity=0)

    if layout.pedestal:
        x, y, z = layout.robot_pos
        world.add_geom(name="pedestal", type=mujoco.mjtGeom.mjGEOM_BOX,
                       size=[0.24, 0.38, (z - 0.04) / 2], pos=[x, y, (z - 0.04) / 2],
                       rgba=[0.25, 0.25, 0.27, 1], contype=0, conaffinity=0)
    _add_robot(spec, robot, layout, links, joints, materials)
    _add_objects(spec, layout, objects)
    return spec


def _add_robot(spec: mujoco.MjSpec, robot: RobotSpec, layout: SceneLayout,
               links: dict[str, _UrdfLink], joints: list[_UrdfJoint],
               materials: dict[str, tuple]) -> None:
    children: dict[str, list[_UrdfJoint]] = {}
    for j in joints:
        children.setdefault(j.parent, []).append(j)
    child_links = {j.child for j in joints}
    roots = [name for name in links if name not in child_links]
    if len(roots) != 1:
        raise ValueError(f"{robot.urdf}: expected one root link, found {roots}")
    fingers = {a.gripper.joint: a.name for a in robot.arms if a.gripper is not None}
    for a in robot.arms:
        if a.gripper is not None:
            fingers.update({m: a.name for m in a.gripper.mimic_joints})
    gripper_parents = {j.parent: fingers[j.name] for j in joints if j.name in fingers}
    frames: dict[str, tuple] = {}  # mass-less link -> (body, pos, quat) it folds into

    def add_link(body: mujoco.MjsBody, link: _UrdfLink) -> None:
        if link.mass > 0:
            body.mass = link.mass
            body.ipos = list(link.inertial_xyz)
            body.iquat = list(rpy_to_quat(link.inertial_rpy))
            body.inertia = list(link.inertia)
            body.explicitinertial = True
        body.gravcomp = 1.0
        for k, (kind, size, xyz, rpy, material) in enumerate(link.geoms):
            body.add_geom(
                name=f"{link.name}_geom{k}", type=_GEOM_TYPES[kind],
                size=list(size) + [0.0] * (3 - len(size)), pos=list(xyz),
                quat=list(rpy_to_quat(rpy)), rgba=list(materials.get(material, (0.6,) * 3 + (1,))),
                contype=ROBOT_CONTYPE, conaffinity=ROBOT_CONAFFINITY, group=1, mass=0.0,
            )
        if link.name in gripper_parents:
            body.add_site(name=f"{gripper_parents[link.name]}_tcp", pos=list(layout.tcp_offset),
                          size=[0.006, 0, 0], rgba=[1, 0, 1, 0.0], group=4)
        for j in children.get(link.name, []):
            add_joint(body, j, np.zeros(3), np.array([1.0, 0, 0, 0]))

    def add_joint(body: mujoco.MjsBody, j: _UrdfJoint, base_pos, base_quat) -> None:
        pos, quat = compose(base_pos, base_quat, j.xyz, rpy_to_quat(j.rpy))
        child = links[j.child]
        if j.type == "fixed" and child.mass <= 0 and not child.geoms:
            frames[child.name] = (body.name, pos, quat)
            for jj in children.get(child.name, []):
                add_joint(body, jj, pos, quat)
            return
        if j.name in robot.fixed_joints:  # held joint: baked in at its fixed value
            axis = np.asarray(j.axis, float) / np.linalg.norm(j.axis)
            x, y, z, w = Rotation.from_rotvec(axis * robot.fixed_joints[j.name]).as_quat()
            quat = quat_mul(quat, [w, x, y, z])
        new = body.add_body(name=child.name, pos=list(pos), quat=list(quat))
        if j.type in ("revolute", "prismatic", "continuous") and j.name not in robot.fixed_joints:
            jnt = new.add_joint(
                name=j.name, axis=list(j.axis),
                type=mujoco.mjtJoint.mjJNT_HINGE if j.type != "prismatic"
                else mujoco.mjtJoint.mjJNT_SLIDE)
            if j.type != "continuous":
                jnt.limited = mujoco.mjtLimited.mjLIMITED_TRUE
                jnt.range = [j.lower, j.upper]
            damping = np.zeros(3)
            damping[0] = j.damping
            jnt.damping = damping
            jnt.frictionloss = j.friction
            # reflected rotor inertia of geared joints (and numerical stability at 500 Hz)
            jnt.armature = 0.002 if j.name in fingers else (0.05 if j.effort > 20 else 0.02)
        elif j.type not in ("fixed", "revolute", "prismatic", "continuous"):
            raise ValueError(f"{robot.urdf}: joint {j.name}: unsupported type {j.type!r}")
        add_link(new, child)
        if j.name in fingers:
            _add_pads(new, child, j)

    root_body = spec.worldbody.add_body(name=roots[0], pos=list(layout.robot_pos))
    add_link(root_body, links[roots[0]])

    by_name = {j.name: j for j in joints}
    for j in joints:
        if j.mimic is not None and j.name not in robot.fixed_joints:
            leader, multiplier, offset = j.mimic
            eq = spec.add_equality(name=f"mimic_{j.name}", type=mujoco.mjtEq.mjEQ_JOINT,
                                   name1=j.name, name2=leader)
            eq.data[:5] = [offset, multiplier, 0.0, 0.0, 0.0]
            eq.solref = [0.004, 1.0]

    # actuators: one position servo per commanded joint, in action-layout order; gains are
    # placeholders here and set from the compiled model's inertia (Scene._tune_gains)
    for name in robot.action_layout:
        j = by_name[name]
        act = spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=100.0, kv=1.0)
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_FALSE
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        force = layout.gripper_force if name in robot.grippers else j.effort
        act.forcerange = [-force, force]

    for cam in robot.cameras:
        frame = frames.get(f"{cam.name}_optical_frame")
        if frame is None:
            raise ValueError(f"{robot.urdf}: no link {cam.name}_optical_frame for camera "
                             f"{cam.name!r}")
        body_name, pos, quat = frame
        # ROS optical frame looks along +z with y down; a MuJoCo camera looks along -z with
        # y up: turn half a revolution about x
        body = spec.body(body_name)
        body.add_camera(name=cam.name, pos=list(pos), quat=list(quat_mul(quat, [0, 1, 0, 0])),
                        fovy=layout.camera_fovy.get(cam.name, 60.0))


def _add_pads(body: mujoco.MjsBody, link: _UrdfLink, joint: _UrdfJoint) -> None:
    """A thin rubbery pad on the finger's inner face near its tip (fingers of both robots sit
    side by side along the gripper's y axis, so "inner" is towards y = 0)."""
    if not link.geoms:
        return
    kind, size, xyz, _, _ = link.geoms[0]
    if kind != "box":
        return
    inner = -np.sign(joint.xyz[1]) if joint.xyz[1] != 0 else -np.sign(joint.axis[1])
    tip = xyz[2] - size[2]
    pad_half = (size[0], 0.001, min(0.015, size[2]))
    body.add_geom(
        name=f"{link.name}_pad", type=mujoco.mjtGeom.mjGEOM_BOX, size=list(pad_half),
        pos=[xyz[0], xyz[1] + inner * (size[1] + pad_half[1]), tip + pad_half[2]],
        rgba=[0.15, 0.15, 0.15, 1], contype=ROBOT_CONTYPE, conaffinity=ROBOT_CONAFFINITY,
        condim=4, friction=[1.5, 0.02, 0.0005], solref=[0.01, 1.0], priority=1, group=1,
        mass=0.0,
    )


# Objects a task can ask for: free bodies (box half sizes, mass, colour) and static fixtures.
FREE_OBJECTS: dict[str, tuple[tuple[float, float, float], float, list[float]]] = {
    "cube": ((CUBE_HALF, CUBE_HALF, CUBE_HALF), 0.05, [0.85, 0.12, 0.1, 1]),
    # long along its own y axis: two grippers can hold it side by side (handover)
    "bar": ((CUBE_HALF, 0.08, CUBE_HALF), 0.08, [0.95, 0.55, 0.1, 1]),
}
FIXTURES = ("bin", "target")
TARGET_HALF = 0.05  # m: square target marker for placing


def _add_objects(spec: mujoco.MjSpec, layout: SceneLayout, objects: tuple[str, ...]) -> None:
    world = spec.worldbody
    z = layout.table_top
    unknown = [o for o in objects if o not in FREE_OBJECTS and o not in FIXTURES]
    if unknown:
        raise ValueError(f"unknown scene objects {unknown}; allowed: "
                         f"{', '.join([*FREE_OBJECTS, *FIXTURES])}")
    for k, name in enumerate(o for o in objects if o in FREE_OBJECTS):
        half, mass, rgba = FREE_OBJECTS[name]
        body = world.add_body(name=name, pos=[0.3, 0.5 + 0.2 * k, z + half[2]])
        body.add_freejoint(name=f"{name}_free")
        body.add_geom(name=f"{name}_geom", type=mujoco.mjtGeom.mjGEOM_BOX, size=list(half),
                      rgba=rgba, mass=mass, condim=4, friction=[1.0, 0.02, 0.0005],
                      contype=WORLD_CONTYPE, conaffinity=WORLD_CONAFFINITY)
    if "bin" in objects:  # static: tasks move it by writing model.body_pos before mj_forward
        box = world.add_body(name="bin", pos=[0.3, 0.2, z])
        t, h, r = BIN_WALL_HALF_THICK, BIN_WALL_HEIGHT / 2, BIN_INNER_HALF
        color = [0.15, 0.35, 0.8, 1]
        box.add_geom(name="bin_floor", type=mujoco.mjtGeom.mjGEOM_BOX,
                     size=[r + 2 * t, r + 2 * t, t], pos=[0, 0, t], rgba=color,
                     contype=WORLD_CONTYPE, conaffinity=WORLD_CONAFFINITY)
        for k, (sx, sy) in enumerate(((1, 0), (-1, 0), (0, 1), (0, -1))):
            size = [t, r + 2 * t, h] if sx else [r + 2 * t, t, h]
            box.add_geom(name=f"bin_wall{k}", type=mujoco.mjtGeom.mjGEOM_BOX, size=size,
                         pos=[sx * (r + t), sy * (r + t), h], rgba=color,
                         contype=WORLD_CONTYPE, conaffinity=WORLD_CONAFFINITY)
    if "target" in objects:  # a flat marker on the table (looks only)
        mark = world.add_body(name="target", pos=[0.3, 0.2, z])
        mark.add_geom(name="target_geom", type=mujoco.mjtGeom.mjGEOM_BOX,
                      size=[TARGET_HALF, TARGET_HALF, 0.001], pos=[0, 0, 0.001],
                      rgba=[0.15, 0.7, 0.3, 1], contype=0, conaffinity=0)


# ---- compiled scene --------------------------------------------------------------------------
@dataclass(frozen=True)
class FreeObject:
    name: str
    body: int
    qpos: int  # 7 qpos entries: position, quaternion (w, x, y, z)
    dof: int  # 6 dofs
    geom: int
    half: tuple[float, float, float]


class Scene:
    """A compiled scene plus the indices the simulator, tasks and experts need."""

    def __init__(self, robot: RobotSpec | str, objects: tuple[str, ...] = ("cube", "bin")
                 ) -> None:
        self.robot = RobotSpec.load(robot) if isinstance(robot, str) else robot
        self.layout = layout_for(self.robot)
        self.objects = tuple(objects)
        self.spec = build_spec(self.robot, self.objects)
        self.model = self.spec.compile()
        m = self.model
        layout_joints = self.robot.action_layout
        jid = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in layout_joints]
        self.joint_qpos = np.array([m.jnt_qposadr[i] for i in jid])  # (D,) action layout
        self.joint_dof = np.array([m.jnt_dofadr[i] for i in jid])
        self.actuators = np.array(
            [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, j) for j in layout_joints])
        self.gripper_index = np.flatnonzero(self.robot.gripper_mask())
        # free objects: name -> FreeObject indices; fixtures: name -> body id
        self.free: dict[str, FreeObject] = {}
        for name in self.objects:
            if name in FREE_OBJECTS:
                joint = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, f"{name}_free")
                self.free[name] = FreeObject(
                    name, mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, name),
                    int(m.jnt_qposadr[joint]), int(m.jnt_dofadr[joint]),
                    mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, f"{name}_geom"),
                    FREE_OBJECTS[name][0])
        self.fixtures = {name: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, name)
                         for name in self.objects if name in FIXTURES}
        self.fixture_geoms = {g for g in range(m.ngeom)
                              if m.geom_bodyid[g] in self.fixtures.values()}
        self.table_geom = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "table")
        self.tcp_site = {a.name: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, f"{a.name}_tcp")
                         for a in self.robot.arms if a.gripper is not None}
        self.arm_dofs = {a.name: np.array([m.jnt_dofadr[mujoco.mj_name2id(
            m, mujoco.mjtObj.mjOBJ_JOINT, j)] for j in a.joints]) for a in self.robot.arms}
        self.arm_index = {a.name: np.array([layout_joints.index(j) for j in a.joints])
                          for a in self.robot.arms}
        self.gripper_of_arm = {a.name: layout_joints.index(a.gripper.joint)
                               for a in self.robot.arms if a.gripper is not None}
        # finger geoms per arm, one set per finger (grasp = the cube touches every finger)
        self.finger_geoms: dict[str, list[set[int]]] = {}
        for a in self.robot.arms:
            if a.gripper is None:
                continue
            sets = []
            for jname in (a.gripper.joint, *a.gripper.mimic_joints):
                body = m.jnt_bodyid[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, jname)]
                sets.append({g for g in range(m.ngeom) if m.geom_bodyid[g] == body})
            self.finger_geoms[a.name] = sets
        self.camera_ids = {c: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, c)
                           for c in self.robot.camera_names}
        self._tune_gains()

    def _tune_gains(self) -> None:
        """Arm servos: kp = M_ii * w^2 and critical damping at the home pose, so every joint
        answers with the same bandwidth whatever its load; grippers: stiff, force-limited."""
        m = self.model
        data = mujoco.MjData(m)
        data.qpos[self.joint_qpos] = self.robot.home_vector()
        mujoco.mj_forward(m, data)
        full = np.zeros((m.nv, m.nv))
        mujoco.mj_fullM(m, data, full)
        w = self.layout.arm_bandwidth
        grippers = set(self.gripper_index.tolist())
        for i, (act, dof) in enumerate(zip(self.actuators, self.joint_dof)):
            inertia = full[dof, dof]  # includes the joint's armature
            if i in grippers:
                kp = self.layout.gripper_kp
                kv = 2.0 * np.sqrt(kp * max(inertia, 0.05 if kp > 100 else 1e-4))
            else:
                kp = inertia * w * w
                kv = 2.0 * inertia * w
            m.actuator_gainprm[act, 0] = kp
            m.actuator_biasprm[act, 1] = -kp
            m.actuator_biasprm[act, 2] = -kv

    def feedforward_gain(self) -> np.ndarray:
        """(D,) kv/kp per actuator: ctrl = q_goal + kv/kp * qd_goal cancels the servo's lag."""
        kp = self.model.actuator_gainprm[self.actuators, 0]
        kv = -self.model.actuator_biasprm[self.actuators, 2]
        return kv / kp

    def xml(self) -> str:
        """The scene as MJCF (for inspection or MuJoCo's viewer)."""
        return self.spec.to_xml()


__all__ = ["CUBE_HALF", "FREE_OBJECTS", "FIXTURES", "LAYOUTS", "PHYSICS_DT", "FreeObject",
           "Scene", "SceneLayout", "build_spec", "layout_for", "read_urdf"]
