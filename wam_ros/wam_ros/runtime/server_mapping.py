"""How our observations and actions map onto a policy server's convention: data, not code.

One YAML per convention under config/servers/ (ROS-free). `ServerMapping.load(name_or_path)`
checks it at start-up (errors name the key, the bad value and what is allowed); `resolve`
fills the sections marked `metadata` from what the server sends on connect and checks the
mapping against the robot; the resolved mapping turns an Observation into the request dict and
a response into a (H, A) chunk in our robot's action layout.

Keys (see config/servers/openpi_aloha.yaml for a commented example):
  robot                 the robot the mapping is written for (`metadata`: the server's)
  cameras               list of {camera, key, height, width, resize, layout}, or `metadata`
                        (the server's `cameras` and `image_size`, key [images, <camera>], HWC)
  state                 list of {key, joints} (our joint names, in the server's order) or
                        {key, value} (a constant vector), or `metadata` (key `state`, the
                        server's `state_layout` / `action_layout`)
  gripper               {closed, open}: the server's value for a closed / fully open gripper
                        (ours is normalised 0..1), used in state and action
  prompt_key            request field of the instruction (null: none sent)
  constants             fields sent unchanged with every request
  endpoint              {key, infer, reset}: the field naming the call (DreamZero), or null
  session_key           field that carries an id renewed at every reset (null: none)
  stamp_key             field that carries the observation's stamp in seconds (null: none)
  action.key            response field of the chunk (null: the response is the array)
  action.joints         our joint for each column (null: a column we ignore), or `metadata`
  action.space          absolute | delta (relative to the state sent)
  action.dt, .horizon   numbers, or `metadata` (the server's `dt` / `horizon`); horizon null:
                        any
  action.execute        actions of each chunk executed (0: all)
A key is a string (a top-level field, which may contain '/') or a list (a nested path).
Our joints that no action column drives hold the position they had in the observation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from wam_ros.core.config import ConfigError
from wam_ros.core.image import prepare_image
from wam_ros.core.robot import RobotSpec
from wam_ros.core.types import Observation

RESIZES = ("resize_with_pad", "center_crop", "resize", "none")
LAYOUTS = ("hwc", "chw")
SPACES = ("absolute", "delta")
METADATA = "metadata"

Key = tuple[str, ...]


def servers_dir() -> Path:
    from wam_ros.paths import config_dir

    return config_dir() / "servers"


def available_mappings() -> list[str]:
    return sorted(p.stem for p in servers_dir().glob("*.yaml"))


def resize_with_pad(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale to fit inside (height, width) keeping the aspect ratio, pad the rest with black,
    centred: the convention openpi's clients and training pipelines use."""
    h, w = rgb.shape[:2]
    if (h, w) == (height, width):
        return rgb
    scale = min(height / h, width / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    small = cv2.resize(rgb, (nw, nh), interpolation=interp)
    out = np.zeros((height, width, 3), np.uint8)
    y0, x0 = (height - nh) // 2, (width - nw) // 2
    out[y0:y0 + nh, x0:x0 + nw] = small
    return out


@dataclass(frozen=True)
class CameraField:
    camera: str
    key: Key
    height: int
    width: int
    resize: str = "resize_with_pad"
    layout: str = "hwc"

    def encode(self, rgb: np.ndarray) -> np.ndarray:
        if self.resize == "none":
            if rgb.shape[:2] != (self.height, self.width):
                raise ValueError(f"camera {self.camera!r}: image {rgb.shape[:2]}, the server "
                                 f"takes ({self.height}, {self.width}) and the mapping says "
                                 "resize: none")
            img = rgb
        elif self.resize == "resize_with_pad":
            img = resize_with_pad(rgb, self.height, self.width)
        else:
            img = prepare_image(rgb, self.height, self.width, self.resize)
        img = np.ascontiguousarray(img, dtype=np.uint8)
        return np.ascontiguousarray(img.transpose(2, 0, 1)) if self.layout == "chw" else img


@dataclass(frozen=True)
class StateField:
    key: Key
    joints: tuple[str, ...] = ()  # our joint names; empty with a constant value
    value: tuple[float, ...] = ()


@dataclass(frozen=True)
class ResolvedMapping:
    """A mapping with every `metadata` section filled in, checked against one robot."""

    name: str
    robot: RobotSpec
    cameras: tuple[CameraField, ...]
    state: tuple[StateField, ...]
    gripper_closed: float
    gripper_open: float
    prompt_key: Key | None
    constants: dict[str, Any]
    endpoint_key: Key | None
    endpoint_infer: str
    endpoint_reset: str
    session_key: Key | None
    stamp_key: Key | None
    action_key: Key | None
    action_joints: tuple[str | None, ...]
    action_space: str
    dt: float
    horizon: int | None
    execute: int

    # ---- observation -> request ------------------------------------------------------
    def _to_server(self, values: np.ndarray, joints: tuple[str | None, ...]) -> np.ndarray:
        """Action-convention values (grippers 0..1) of `joints` -> the server's units."""
        out = np.asarray(values, np.float64).copy()
        grip = self._gripper_columns(joints)
        out[grip] = self.gripper_closed + out[grip] * (self.gripper_open - self.gripper_closed)
        return out

    def _gripper_columns(self, joints: tuple[str | None, ...]) -> np.ndarray:
        grippers = set(self.robot.grippers)
        return np.array([j in grippers for j in joints], bool)

    def request(self, obs: Observation, state_act: np.ndarray, session: str = "") -> dict:
        """The request for `obs`; state_act: its joints in our action convention (A,)."""
        out: dict[str, Any] = {}
        for cam in self.cameras:
            rgb = obs.images.get(cam.camera)
            if rgb is None:
                raise ValueError(f"observation lacks camera {cam.camera!r}; the mapping "
                                 f"{self.name!r} sends {[c.camera for c in self.cameras]}")
            _put(out, cam.key, cam.encode(rgb))
        index = {n: i for i, n in enumerate(self.robot.action_layout)}
        for st in self.state:
            if st.joints:
                vec = self._to_server(state_act[[index[j] for j in st.joints]], st.joints)
            else:
                vec = np.asarray(st.value, np.float64)
            _put(out, st.key, vec.astype(np.float32))
        if self.prompt_key is not None:
            _put(out, self.prompt_key, obs.task)
        for k, v in self.constants.items():
            out[k] = v
        if self.session_key is not None:
            _put(out, self.session_key, session)
        if self.stamp_key is not None:
            _put(out, self.stamp_key, float(obs.stamp))
        if self.endpoint_key is not None:
            _put(out, self.endpoint_key, self.endpoint_infer)
        return out

    def reset_request(self, session: str = "") -> dict | None:
        """The request that resets the server's memory (None: the convention has none)."""
        if self.endpoint_key is None or not self.endpoint_reset:
            return None
        out: dict[str, Any] = dict(self.constants)
        if self.session_key is not None:
            _put(out, self.session_key, session)
        _put(out, self.endpoint_key, self.endpoint_reset)
        return out

    # ---- response -> chunk ----------------------------------------------------------
    def actions(self, response: Any, state_act: np.ndarray, where: str = "server"
                ) -> np.ndarray:
        """(H, A) absolute actions in our layout and convention from a response; ValueError
        naming the field, its shape and the expected one for anything else."""
        name = "/".join(self.action_key) if self.action_key else "(the response)"
        if self.action_key is None:
            raw = response
        else:
            try:
                raw = _get(response, self.action_key)
            except (KeyError, TypeError):
                got = sorted(map(str, response)) if isinstance(response, dict) else \
                    type(response).__name__
                raise ValueError(f"{where}: chunk refused: the response has no field {name!r} "
                                 f"(it has {got})") from None
        cols = len(self.action_joints)
        if not isinstance(raw, np.ndarray) or raw.ndim != 2 or raw.shape[1] != cols \
                or raw.dtype.kind not in "iuf" or raw.shape[0] < 1:
            shape = raw.shape if isinstance(raw, np.ndarray) else type(raw).__name__
            dtype = f" {raw.dtype}" if isinstance(raw, np.ndarray) else ""
            raise ValueError(f"{where}: chunk refused: {name} has shape {shape}{dtype}; "
                             f"expected (H, {cols}) numbers, columns "
                             f"{[j or '-' for j in self.action_joints]}")
        if self.horizon is not None and raw.shape[0] != self.horizon:
            raise ValueError(f"{where}: chunk refused: {name} has shape {raw.shape}; the "
                             f"server announced horizon {self.horizon}: expected "
                             f"({self.horizon}, {cols})")
        bad = ~np.isfinite(raw)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(f"{where}: chunk refused: {name} {raw.shape} has {int(bad.sum())} "
                             f"NaN/inf values (first at row {r}, column {c} "
                             f"{self.action_joints[c] or '-'})")
        raw = raw.astype(np.float64)
        used = [i for i, j in enumerate(self.action_joints) if j is not None]
        joints = tuple(self.action_joints[i] for i in used)
        values = raw[:, used]
        grip = self._gripper_columns(joints)
        span = self.gripper_open - self.gripper_closed
        if self.action_space == "delta":  # a change of opening: scale only
            values[:, grip] = values[:, grip] / span
        else:
            values[:, grip] = (values[:, grip] - self.gripper_closed) / span
        index = {n: i for i, n in enumerate(self.robot.action_layout)}
        cols_ours = [index[j] for j in joints]
        out = np.repeat(np.asarray(state_act, np.float64)[None], raw.shape[0], axis=0)
        if self.action_space == "delta":
            out[:, cols_ours] += values
        else:
            out[:, cols_ours] = values
        if self.execute:
            out = out[: self.execute]
        return out.astype(np.float32)


@dataclass(frozen=True)
class ServerMapping:
    """The mapping as written in its YAML (sections may still say `metadata`)."""

    name: str
    robot: str
    cameras: Any
    state: Any
    action: dict[str, Any]
    gripper: tuple[float, float] = (0.0, 1.0)
    prompt_key: Key | None = ("prompt",)
    constants: dict[str, Any] = field(default_factory=dict)
    endpoint: dict[str, Any] | None = None
    session_key: Key | None = None
    stamp_key: Key | None = None
    description: str = ""
    not_public: str = ""

    @classmethod
    def load(cls, name_or_path: str | Path) -> ServerMapping:
        text = str(name_or_path)
        path = Path(text) if (text.endswith((".yaml", ".yml")) or "/" in text) else \
            servers_dir() / f"{text}.yaml"
        if not path.is_file():
            raise ConfigError(f"server mapping {text!r}: no file {path}; shipped: "
                              f"{', '.join(available_mappings())}")
        doc = yaml.safe_load(path.read_text()) or {}
        return cls.parse(doc, path.stem)

    @classmethod
    def parse(cls, doc: dict, name: str = "mapping") -> ServerMapping:
        where = f"server mapping {name}"
        if not isinstance(doc, dict):
            raise ConfigError(f"{where}: expected a YAML mapping at the top")
        known = {"robot", "description", "cameras", "state", "gripper", "prompt_key",
                 "constants", "endpoint", "session_key", "stamp_key", "action", "not_public"}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed: "
                              f"{', '.join(sorted(known))}")
        for req in ("robot", "cameras", "state", "action"):
            if req not in doc:
                raise ConfigError(f"{where}: key {req!r} is missing")
        cameras = doc["cameras"]
        if cameras != METADATA:
            if not isinstance(cameras, list) or not cameras:
                raise ConfigError(f"{where}: cameras: expected a list of cameras or "
                                  f"'metadata', got {cameras!r}")
            cameras = tuple(_camera(c, f"{where}: cameras[{i}]") for i, c in enumerate(cameras))
        state = doc["state"]
        if state != METADATA:
            if not isinstance(state, list) or not state:
                raise ConfigError(f"{where}: state: expected a list of fields or 'metadata', "
                                  f"got {state!r}")
            state = tuple(_state(s, f"{where}: state[{i}]") for i, s in enumerate(state))
        action = doc["action"]
        if not isinstance(action, dict):
            raise ConfigError(f"{where}: action: expected a mapping, got {action!r}")
        _check_action(action, f"{where}: action")
        grip = doc.get("gripper") or {"closed": 0.0, "open": 1.0}
        try:
            gripper = (float(grip["closed"]), float(grip["open"]))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{where}: gripper: expected {{closed: number, open: number}}, "
                              f"got {grip!r}") from None
        if gripper[0] == gripper[1]:
            raise ConfigError(f"{where}: gripper: closed and open are both {gripper[0]}")
        endpoint = doc.get("endpoint")
        if endpoint is not None and not (isinstance(endpoint, dict) and "key" in endpoint
                                         and "infer" in endpoint):
            raise ConfigError(f"{where}: endpoint: expected null or {{key, infer, reset}}, "
                              f"got {endpoint!r}")
        constants = doc.get("constants") or {}
        if not isinstance(constants, dict):
            raise ConfigError(f"{where}: constants: expected a mapping, got {constants!r}")
        return cls(name=name, robot=str(doc["robot"]), cameras=cameras, state=state,
                   action=dict(action), gripper=gripper,
                   prompt_key=_key(doc.get("prompt_key", "prompt"), f"{where}: prompt_key",
                                   optional=True),
                   constants=dict(constants), endpoint=endpoint,
                   session_key=_key(doc.get("session_key"), f"{where}: session_key",
                                    optional=True),
                   stamp_key=_key(doc.get("stamp_key"), f"{where}: stamp_key", optional=True),
                   description=str(doc.get("description", "")),
                   not_public=str(doc.get("not_public", "")))

    def resolve(self, robot: RobotSpec, metadata: dict | None) -> ResolvedMapping:
        """Fill the `metadata` sections from the server's metadata (None: not connected
        yet: defaults that let a node start) and check every joint against the robot."""
        where = f"server mapping {self.name}"
        meta = metadata or {}
        if self.robot == METADATA:  # any robot: the server says which it was trained for
            served = meta.get("robot", robot.name)
            if served != robot.name:
                raise ConfigError(f"{where}: the server's model is for robot {served!r}, the "
                                  f"node runs {robot.name!r}")
        elif self.robot != robot.name:
            raise ConfigError(f"{where}: written for robot {self.robot!r}, the node runs "
                              f"{robot.name!r}")

        def from_meta(key: str, section: str) -> Any:
            if key not in meta:
                raise ConfigError(f"{where}: {section} is 'metadata' but the server's metadata "
                                  f"has no {key!r} (it has {sorted(map(str, meta))})")
            return meta[key]

        if self.cameras == METADATA:
            if metadata is None:
                h, w = 224, 224
                names = robot.camera_names
            else:
                h, w = (int(v) for v in from_meta("image_size", "cameras"))
                names = tuple(str(c) for c in from_meta("cameras", "cameras"))
            cameras = tuple(CameraField(c, ("images", c), h, w, "center_crop", "hwc")
                            for c in names)
        else:
            cameras = self.cameras
        for i, cam in enumerate(cameras):
            if cam.camera not in robot.camera_names:
                raise ConfigError(f"{where}: cameras[{i}].camera: {cam.camera!r} is not a "
                                  f"camera of {robot.name}; allowed: "
                                  f"{', '.join(robot.camera_names)}")
        layout = tuple(robot.action_layout)
        if self.state == METADATA:
            joints = tuple(meta.get("state_layout", meta.get("action_layout", layout))) \
                if metadata is not None else layout
            state = (StateField(("state",), tuple(str(j) for j in joints)),)
        else:
            state = self.state
        for i, st in enumerate(state):
            _joints_of(robot, st.joints, f"{where}: state[{i}].joints")
        act = self.action
        joints_a = act["joints"]
        if joints_a == METADATA:
            joints_a = tuple(meta.get("action_layout", layout)) if metadata is not None \
                else layout
        joints_a = tuple(None if j is None else str(j) for j in joints_a)
        _joints_of(robot, tuple(j for j in joints_a if j is not None),
                   f"{where}: action.joints")
        dt = act.get("dt", METADATA)
        if dt == METADATA:
            dt = float(from_meta("dt", "action.dt")) if metadata is not None else \
                robot.action_dt
        horizon = act.get("horizon")
        if horizon == METADATA:
            horizon = (int(meta.get("horizon", meta.get("action_horizon", 0))) or None) \
                if metadata is not None else None
        space = act.get("space", "absolute")
        if metadata is not None and meta.get("action_space") not in (None, space):
            raise ConfigError(f"{where}: action.space is {space!r}, the server says its "
                              f"actions are {meta['action_space']!r}")
        endpoint = self.endpoint or {}
        return ResolvedMapping(
            name=self.name, robot=robot, cameras=tuple(cameras), state=tuple(state),
            gripper_closed=self.gripper[0], gripper_open=self.gripper[1],
            prompt_key=self.prompt_key, constants=dict(self.constants),
            endpoint_key=_key(endpoint.get("key"), f"{where}: endpoint.key", optional=True),
            endpoint_infer=str(endpoint.get("infer", "")),
            endpoint_reset=str(endpoint.get("reset") or ""),
            session_key=self.session_key, stamp_key=self.stamp_key,
            action_key=_key(act.get("key"), f"{where}: action.key", optional=True),
            action_joints=joints_a, action_space=space, dt=float(dt),
            horizon=None if horizon is None else int(horizon),
            execute=int(act.get("execute", 0) or 0))


# ---- helpers -----------------------------------------------------------------------------
def _key(value: Any, where: str, optional: bool = False) -> Key | None:
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: missing")
    if isinstance(value, str) and value:
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise ConfigError(f"{where}: got {value!r}; allowed: a field name or a list of names "
                      "(a nested path)")


def _camera(doc: Any, where: str) -> CameraField:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: expected {{camera, key, height, width, resize, layout}}, "
                          f"got {doc!r}")
    unknown = sorted(set(doc) - {"camera", "key", "height", "width", "resize", "layout"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed: camera, key, height, "
                          "width, resize, layout")
    for req in ("camera", "key", "height", "width"):
        if req not in doc:
            raise ConfigError(f"{where}.{req}: missing")
    for dim in ("height", "width"):
        if not isinstance(doc[dim], int) or doc[dim] <= 0:
            raise ConfigError(f"{where}.{dim}: got {doc[dim]!r}; allowed: pixels > 0")
    resize = doc.get("resize", "resize_with_pad")
    if resize not in RESIZES:
        raise ConfigError(f"{where}.resize: got {resize!r}; allowed: {', '.join(RESIZES)}")
    layout = doc.get("layout", "hwc")
    if layout not in LAYOUTS:
        raise ConfigError(f"{where}.layout: got {layout!r}; allowed: {', '.join(LAYOUTS)}")
    return CameraField(str(doc["camera"]), _key(doc["key"], f"{where}.key"), doc["height"],
                       doc["width"], resize, layout)


def _state(doc: Any, where: str) -> StateField:
    if not isinstance(doc, dict) or "key" not in doc or (("joints" in doc) == ("value" in doc)):
        raise ConfigError(f"{where}: expected {{key, joints: [...]}} or {{key, value: [...]}}, "
                          f"got {doc!r}")
    key = _key(doc["key"], f"{where}.key")
    if "joints" in doc:
        joints = doc["joints"]
        if not isinstance(joints, list) or not joints:
            raise ConfigError(f"{where}.joints: expected a list of joint names, got {joints!r}")
        return StateField(key, tuple(str(j) for j in joints))
    value = doc["value"]
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) for v in value):
        raise ConfigError(f"{where}.value: expected a list of numbers, got {value!r}")
    return StateField(key, value=tuple(float(v) for v in value))


def _check_action(act: dict, where: str) -> None:
    known = {"key", "joints", "space", "dt", "horizon", "execute"}
    unknown = sorted(set(act) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed: "
                          f"{', '.join(sorted(known))}")
    joints = act.get("joints")
    if joints != METADATA and not (isinstance(joints, list) and joints):
        raise ConfigError(f"{where}.joints: expected a list (our joint per column, null for "
                          f"a column we ignore) or 'metadata', got {joints!r}")
    if act.get("space", "absolute") not in SPACES:
        raise ConfigError(f"{where}.space: got {act.get('space')!r}; allowed: "
                          f"{', '.join(SPACES)}")
    dt = act.get("dt", METADATA)
    if dt != METADATA and not (isinstance(dt, (int, float)) and dt > 0):
        raise ConfigError(f"{where}.dt: got {dt!r}; allowed: seconds > 0 or 'metadata'")
    horizon = act.get("horizon")
    if horizon not in (None, METADATA) and not (isinstance(horizon, int) and horizon > 0):
        raise ConfigError(f"{where}.horizon: got {horizon!r}; allowed: null, 'metadata' or "
                          "an int > 0")
    execute = act.get("execute", 0)
    if not isinstance(execute, int) or execute < 0:
        raise ConfigError(f"{where}.execute: got {execute!r}; allowed: int >= 0 (0: all)")


def _joints_of(robot: RobotSpec, joints: tuple[str, ...], where: str) -> None:
    for j in joints:
        if j not in robot.action_layout:
            raise ConfigError(f"{where}: {j!r} is not in the action layout of {robot.name}; "
                              f"allowed: {', '.join(robot.action_layout)}")


def _put(out: dict, key: Key, value: Any) -> None:
    for part in key[:-1]:
        out = out.setdefault(part, {})
    out[key[-1]] = value


def _get(doc: Any, key: Key) -> Any:
    for part in key:
        doc = doc[part]
    return doc


__all__ = ["METADATA", "CameraField", "ResolvedMapping", "ServerMapping", "StateField",
           "available_mappings", "resize_with_pad", "servers_dir"]
