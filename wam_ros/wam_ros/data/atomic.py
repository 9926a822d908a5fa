"""Conversions write a whole output directory or nothing: into a hidden temporary directory
beside the destination, renamed onto it only when everything is written."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_directory(out: str | Path) -> Iterator[Path]:
    """Yields a fresh temporary directory; on a clean exit it becomes `out` (which must not
    exist), on an exception it is removed and `out` stays absent."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists already; choose a new --out (nothing is "
                              "overwritten)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


__all__ = ["atomic_directory"]
