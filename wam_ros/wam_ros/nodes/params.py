"""ROS parameters <-> settings dataclasses, in one place.

Every field of a settings dataclass becomes a parameter of the same name (with `prefix.` when
given), the dataclass default, a description and its range; the values read back build the
dataclass, whose validation turns a bad value into one clear error at start-up. A few
parameters can change while the node runs; the others are read-only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeVar

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

from wam_ros.core.config import ConfigError, field_docs
from wam_ros.core.settings import settings_bounds, settings_from

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


def declare_settings(node: Node, cls: type[T], prefix: str = "",
                     live: Callable[[T], None] | None = None,
                     live_fields: tuple[str, ...] = ()) -> T:
    """Declare one parameter per field of `cls` and return the validated settings.

    Each parameter carries a description (the dataclass's own comments, core.config.field_docs)
    and its range or choices (what validation checks, core.settings.settings_bounds). Fields in
    `live_fields` can be changed while the node runs (`ros2 param set`): the new settings are
    validated as a whole and handed to `live`; a bad value is refused with the validation's
    message. Every other parameter is read-only after start-up: a set is refused, with that
    reason, instead of being accepted and silently ignored."""
    docs = field_docs(cls)
    bounds = settings_bounds(cls) if hasattr(cls, "validate") else {}
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = f"{prefix}.{f.name}" if prefix else f.name
        if f.type not in _TYPES:
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported parameter type {f.type}")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if not node.has_parameter(name):
            if f.type.startswith("float"):
                default = float(default)
            try:
                node.declare_parameter(name, list(default) if isinstance(default, tuple)
                                       else default,
                                       _descriptor(f, docs, bounds, f.name in live_fields))
            except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
                raise ConfigError(f"node {node.get_name()}: parameter {name}: {exc}") from exc
        values[name] = node.get_parameter(name).value
    try:
        settings = settings_from(cls, values, prefix)
    except ConfigError as exc:
        raise ConfigError(f"node {node.get_name()}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"node {node.get_name()}: {cls.__name__}: {exc}") from exc
    if live is not None and live_fields:
        _watch(node, settings, prefix, live, live_fields)
    return settings


def _descriptor(f: dataclasses.Field, docs: dict[str, str],
                bounds: dict[str, tuple], live: bool) -> ParameterDescriptor:
    minimum, maximum, choices = bounds.get(f.name, (None, None, None))
    constraints = []
    if choices:
        constraints.append(f"one of: {', '.join(map(str, choices))}")
    if minimum is not None or maximum is not None:
        constraints.append("range: " + " .. ".join(
            "" if b is None else f"{b:g}" for b in (minimum, maximum)).strip())
    constraints.append("can be set while running" if live else
                       "start-up only (read-only once the node runs: relaunch to change it)")
    descriptor = ParameterDescriptor(description=docs.get(f.name, ""),
                                     additional_constraints="; ".join(constraints),
                                     read_only=not live)
    if minimum is not None and maximum is not None:
        if f.type == "int":
            descriptor.integer_range = [IntegerRange(from_value=int(minimum),
                                                     to_value=int(maximum), step=1)]
        elif f.type == "float":
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(minimum), to_value=float(maximum), step=0.0)]
    return descriptor


def _watch(node: Node, settings: T, prefix: str, apply: Callable[[T], None],
           live_fields: tuple[str, ...]) -> None:
    state = {"settings": settings}
    head = f"{prefix}." if prefix else ""

    def on_set(params: list[Parameter]) -> SetParametersResult:
        changes = {p.name[len(head):]: p.value for p in params
                   if p.name.startswith(head) and p.name[len(head):] in live_fields}
        if not changes:
            return SetParametersResult(successful=True)
        current = state["settings"]
        for key, value in changes.items():
            if isinstance(getattr(current, key), float) and isinstance(value, int):
                changes[key] = float(value)
        try:
            new = dataclasses.replace(current, **changes)
            apply(new)
        except (ConfigError, ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        state["settings"] = new
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
