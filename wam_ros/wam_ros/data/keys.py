"""Single key presses from a terminal (keyboard, or a USB foot pedal, which types keys).

`TerminalKeys` puts the terminal in cbreak mode (keys arrive without Enter, no echo), reads them
on a daemon thread and hands them out as names: printable characters as they are, "space",
"enter", "up" / "down" / "left" / "right", "pageup" / "pagedown" (what most foot pedals send),
"f1".."f12". Without a terminal (a launch file, a test) it yields nothing. The terminal is
restored on close, also when the program ends by an exception.

Written here because no maintained PyPI package reads raw keys without pulling in a UI toolkit.
"""

from __future__ import annotations

import os
import queue
import select
import sys
import threading
from typing import Any

# Escape sequences (xterm / VT100) of the keys we name.
_SEQUENCES = {
    "\x1b[A": "up", "\x1b[B": "down", "\x1b[C": "right", "\x1b[D": "left",
    "\x1b[5~": "pageup", "\x1b[6~": "pagedown", "\x1bOP": "f1", "\x1bOQ": "f2",
    "\x1bOR": "f3", "\x1bOS": "f4", "\x1b[15~": "f5", "\x1b[17~": "f6", "\x1b[18~": "f7",
    "\x1b[19~": "f8", "\x1b[20~": "f9", "\x1b[21~": "f10", "\x1b[23~": "f11",
    "\x1b[24~": "f12",
}
_NAMES = {" ": "space", "\n": "enter", "\r": "enter", "\t": "\t", "\x7f": "backspace"}


def parse_keys(text: str) -> list[str]:
    """Characters read from a terminal -> key names."""
    keys, i = [], 0
    while i < len(text):
        if text[i] == "\x1b":
            for seq, name in _SEQUENCES.items():
                if text.startswith(seq, i):
                    keys.append(name)
                    i += len(seq)
                    break
            else:
                keys.append("escape")
                i += 1
            continue
        keys.append(_NAMES.get(text[i], text[i]))
        i += 1
    return keys


class _Reader:
    """The one thread that reads the terminal; every subscriber gets every key."""

    def __init__(self, fd: int) -> None:
        import termios
        import tty

        self.fd = fd
        self.saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        self.subscribers: list[queue.Queue[str]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, name="terminal_keys", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if not ready:
                continue
            try:
                text = os.read(self.fd, 64).decode(errors="replace")
            except OSError:
                return
            with self.lock:
                for key in parse_keys(text):
                    for q in self.subscribers:
                        q.put(key)

    def restore(self) -> None:
        import termios

        self.stop.set()
        termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


_readers: dict[int, _Reader] = {}
_readers_lock = threading.Lock()


class TerminalKeys:
    """Keys pressed in this process's terminal. Several TerminalKeys (the recorder's episode
    keys and a keyboard operator's jog keys, composed in one process) share one reader and
    each sees every key; the terminal is restored when the last one closes."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdin
        self.keys: queue.Queue[str] = queue.Queue()
        self._reader: _Reader | None = None
        try:
            self.fd = self.stream.fileno()
            self.available = os.isatty(self.fd)
        except (AttributeError, OSError, ValueError):
            self.fd, self.available = -1, False

    def __enter__(self) -> TerminalKeys:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        if not self.available or self._reader is not None:
            return
        with _readers_lock:
            reader = _readers.get(self.fd)
            if reader is None:
                reader = _readers[self.fd] = _Reader(self.fd)
            with reader.lock:
                reader.subscribers.append(self.keys)
        self._reader = reader

    def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is None:
            return
        with _readers_lock:
            with reader.lock:
                if self.keys in reader.subscribers:
                    reader.subscribers.remove(self.keys)
                last = not reader.subscribers
            if last:
                reader.restore()
                _readers.pop(self.fd, None)

    def pending(self) -> list[str]:
        """Keys pressed since the last call (never blocks)."""
        out = []
        while True:
            try:
                out.append(self.keys.get_nowait())
            except queue.Empty:
                return out


__all__ = ["TerminalKeys", "parse_keys"]
