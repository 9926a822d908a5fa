"""msgpack with numpy arrays, in the wire format of openpi's policy servers (ROS-free).

An array travels as the map {b"__ndarray__": True, b"data": its raw bytes, b"dtype": dtype.str,
b"shape": [...]}, a numpy scalar as {b"__npgeneric__": True, b"data": item, b"dtype": str}:
what openpi's WebsocketPolicyServer and client, DreamZero's server and the servers that follow
them exchange. Written here (not openpi-client's module) because that package pins numpy < 2.

Decoding builds arrays only from the raw bytes of plain dtypes (bool, integers, floats,
fixed-width strings) after checking that the byte count matches the shape; object, void and
complex arrays are refused both ways. msgpack itself has no code path that unpickles, and
neither has this module: a network payload can never run code here.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

_KINDS = frozenset("biufUS")  # bool, int, uint, float, unicode, bytes


class WireFormatError(ValueError):
    """A payload that is not valid msgpack-numpy (or carries a refused dtype)."""


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.kind not in _KINDS or dtype.hasobject:
        raise WireFormatError(f"dtype {dtype.str!r} is not sent over the wire; allowed kinds: "
                              "bool, int, uint, float, str, bytes")


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        _check_dtype(obj.dtype)
        # a view, not .tobytes(): msgpack copies the buffer once into its output
        data = memoryview(np.ascontiguousarray(obj)).cast("B") if obj.size else b""
        return {b"__ndarray__": True, b"data": data,
                b"dtype": obj.dtype.str, b"shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        _check_dtype(obj.dtype)
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot send {type(obj).__name__} over msgpack-numpy")


def _decode(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        try:
            dtype = np.dtype(_text(obj[b"dtype"]))
            shape = tuple(int(n) for n in obj[b"shape"])
            data = obj[b"data"]
        except (KeyError, TypeError, ValueError) as exc:
            raise WireFormatError(f"malformed array map: {exc}") from exc
        _check_dtype(dtype)
        if not isinstance(data, bytes) or any(n < 0 for n in shape):
            raise WireFormatError(f"malformed array map: shape {shape}, data "
                                  f"{type(data).__name__}")
        if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != len(data):
            raise WireFormatError(f"array of shape {shape} {dtype.str} needs "
                                  f"{int(np.prod(shape)) * dtype.itemsize} bytes, got {len(data)}")
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    if b"__npgeneric__" in obj:
        try:
            dtype = np.dtype(_text(obj[b"dtype"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise WireFormatError(f"malformed scalar map: {exc}") from exc
        _check_dtype(dtype)
        return dtype.type(obj[b"data"])
    return obj


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def packb(obj: Any) -> bytes:
    """obj (dicts, lists, str, numbers, numpy arrays and scalars) -> msgpack bytes."""
    return msgpack.packb(obj, default=_encode, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    """msgpack bytes -> the object, arrays as (read-only) numpy arrays."""
    try:
        return msgpack.unpackb(data, object_hook=_decode, raw=False, strict_map_key=False)
    except WireFormatError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise WireFormatError(f"not a msgpack payload: {exc}") from exc


__all__ = ["WireFormatError", "packb", "unpackb"]
