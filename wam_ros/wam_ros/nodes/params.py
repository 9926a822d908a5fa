"""ROS parameters <-> settings dataclasses, in one place.

Every field of a settings dataclass becomes a parameter of the same name (with `prefix.` when
given) and the dataclass default; the values read back build the dataclass, whose validation
turns a bad value into one clear error at start-up.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

from rclpy.node import Node
from rclpy.parameter import Parameter

from wam_ros.core.config import ConfigError

T = TypeVar("T")

_TYPES = {
    "bool": Parameter.Type.BOOL,
    "int": Parameter.Type.INTEGER,
    "float": Parameter.Type.DOUBLE,
    "float | tuple[float, ...]": Parameter.Type.DOUBLE,  # one value for every joint
    "str": Parameter.Type.STRING,
    "tuple[str, ...]": Parameter.Type.STRING_ARRAY,
    "tuple[float, ...]": Parameter.Type.DOUBLE_ARRAY,
}


def declare_settings(node: Node, cls: type[T], prefix: str = "") -> T:
    """Declare one parameter per field of `cls` and return the validated settings."""
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = f"{prefix}.{f.name}" if prefix else f.name
        if f.type not in _TYPES:
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported parameter type {f.type}")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if not node.has_parameter(name):
            if f.type.startswith("float"):
                default = float(default)
            node.declare_parameter(name, list(default) if isinstance(default, tuple)
                                   else default)
        value = node.get_parameter(name).value
        if f.type.startswith("tuple"):
            value = tuple(value or ())
        elif f.type.startswith("float") and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        values[f.name] = value
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(f"node {node.get_name()}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"node {node.get_name()}: {cls.__name__}: {exc}") from exc
