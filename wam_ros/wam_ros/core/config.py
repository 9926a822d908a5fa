"""Reading YAML configuration with errors an operator can act on.

Every error names the file, the key (as a dotted path), the bad value and what is allowed, so a
typo in a robot or node config fails at start-up with one readable line instead of a traceback
deep inside the control loop.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """Invalid configuration: message names file, key, bad value and allowed values."""


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise ConfigError(f"{path}: expected a mapping at the top level, got {kind}")
    return data


class Section:
    """A mapping read from one file, with typed accessors that produce ConfigErrors.

    Call `finish()` after reading to reject keys nobody asked for (typos).
    """

    def __init__(self, data: Mapping[str, Any], file: str | Path, path: str = "") -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{file}: {path or '<top>'}: expected a mapping, got {data!r}"
            )
        self.data = data
        self.file = str(file)
        self.path = path
        self._seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, message: str) -> ConfigError:
        return ConfigError(f"{self.file}: {self.key(name)}: {message}")

    def has(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str, default: Any = ...) -> Any:
        self._seen.add(name)
        if name not in self.data:
            if default is ...:
                raise self.error(name, "missing required key")
            return default
        return self.data[name]

    def str(self, name: str, default: Any = ...) -> str:
        value = self.raw(name, default)
        if not isinstance(value, str) or not value:
            raise self.error(name, f"expected a non-empty string, got {value!r}")
        return value

    def choice(self, name: str, allowed: Iterable[str], default: Any = ...) -> str:
        allowed = list(allowed)
        value = self.raw(name, default)
        if value not in allowed:
            raise self.error(name, f"got {value!r}; allowed: {', '.join(map(str, allowed))}")
        return value

    def float(
        self, name: str, default: Any = ..., *, min: float | None = None,
        max: float | None = None, min_exclusive: bool = False,
    ) -> float:
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value
        ):
            raise self.error(name, f"expected a finite number, got {value!r}")
        value = float(value)
        if min is not None and (value <= min if min_exclusive else value < min):
            bound = f"> {min}" if min_exclusive else f">= {min}"
            raise self.error(name, f"got {value!r}; allowed: {bound}")
        if max is not None and value > max:
            raise self.error(name, f"got {value!r}; allowed: <= {max}")
        return value

    def int(self, name: str, default: Any = ..., *, min: int | None = None) -> int:
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected an integer, got {value!r}")
        if min is not None and value < min:
            raise self.error(name, f"got {value!r}; allowed: >= {min}")
        return value

    def bool(self, name: str, default: Any = ...) -> bool:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise self.error(name, f"expected true or false, got {value!r}")
        return value

    def str_list(self, name: str, default: Any = ..., *, allowed: Iterable[str] | None = None,
                 unique: bool = True) -> tuple[str, ...]:
        value = self.raw(name, default)
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, str) and v for v in value
        ):
            raise self.error(name, f"expected a list of names, got {value!r}")
        if allowed is not None:
            allowed = list(allowed)
            for v in value:
                if v not in allowed:
                    raise self.error(name, f"unknown name {v!r}{_suggest(v, allowed)}; "
                                     f"allowed: {', '.join(allowed)}")
        if unique:
            dupes = sorted({v for v in value if list(value).count(v) > 1})
            if dupes:
                raise self.error(name, f"duplicate names {dupes}")
        return tuple(value)

    def section(self, name: str, default: Any = ...) -> Section:
        value = self.raw(name, default)
        if not isinstance(value, Mapping):
            raise self.error(name, f"expected a mapping, got {value!r}")
        return Section(value, self.file, self.key(name))

    def sections(self, name: str, default: Any = ...) -> dict[str, Section]:
        """A mapping of name -> mapping, e.g. `joints: {j1: {...}, j2: {...}}`."""
        outer = self.section(name, default)
        outer._seen.update(outer.data)
        return {k: outer.section(k) for k in outer.data}

    def finish(self) -> None:
        unknown = [k for k in self.data if k not in self._seen]
        if unknown:
            known = sorted(self._seen)
            k = unknown[0]
            raise ConfigError(
                f"{self.file}: {self.key(k)}: unknown key{_suggest(k, known)}; "
                f"allowed here: {', '.join(known)}"
            )


def _suggest(name: str, allowed: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(name), list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def field_docs(cls: type) -> dict[str, str]:
    """field name -> what the dataclass `cls` says of it: the comment block above the field,
    its trailing comment, and entries `name: text` (or `a / b: text`) of the class docstring.
    The settings dataclasses document their fields this way once; ROS parameter descriptions
    are generated from it."""
    import inspect
    import re

    docs: dict[str, list[list[str]]] = {}
    doc = inspect.getdoc(cls) or ""
    entry = re.compile(r"^([a-z_][\w ]*(?: / [a-z_]\w*)*): (.+)$")
    current: list[str] | None = None
    for line in doc.splitlines():
        m = entry.match(line.strip()) if not line.startswith((" ", "\t")) else None
        if m and all(n.strip().isidentifier() for n in m.group(1).split("/")):
            current = [m.group(2)]  # continuation lines are appended to it below
            for name in m.group(1).split("/"):
                docs.setdefault(name.strip(), []).append(current)
        elif current is not None and line.startswith((" ", "\t")) and line.strip():
            current.append(line.strip())
        else:
            current = None
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        source = ""
    block: list[str] = []
    field_line = re.compile(r"^    ([a-z_]\w*): [^=]+=.*?(?:#\s*(.*))?$")
    for line in source.splitlines():
        stripped = line.strip()
        if line.startswith("    #") and not line.startswith("     "):
            block.append(stripped.lstrip("#").strip())
            continue
        m = field_line.match(line)
        if m:
            text = block + ([m.group(2).strip()] if m.group(2) else [])
            if text:
                docs.setdefault(m.group(1), []).append(text)
        block = []
    return {name: " ".join(" ".join(" ".join(p) for p in parts).split())
            for name, parts in docs.items()}
