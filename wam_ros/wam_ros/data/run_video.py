"""Videos of runs (demo, simulator rollouts, bag replays): the cameras side by side, with the
episode, time, task phase and plan latency written over them. ROS-free.

H.264 (libx264, yuv420p: what every player opens) where the PyAV build has the encoder, else
MPEG-4 Part 2 in the same .mp4 container, which players open as widely.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wam_ros.data.video import PLAYABLE_CODECS, VideoWriter, pick_codec

MAX_FILL_S = 5.0  # longest gap of missing frames filled with the previous one
MIN_HEIGHT = 240  # small model-resolution frames are enlarged so the text stays readable
BANNER = 22  # pixels per text line


def compose(images: Mapping[str, np.ndarray] | Sequence[np.ndarray], lines: Sequence[str],
            min_height: int = MIN_HEIGHT) -> np.ndarray:
    """Camera frames side by side (same height, enlarged by a whole factor up to at least
    `min_height`) under a black banner holding `lines`: (H, W, 3) uint8 RGB, even sizes."""
    import cv2

    frames = list(images.values()) if isinstance(images, Mapping) else list(images)
    if not frames:
        raise ValueError("no camera frames to compose")
    h = max(f.shape[0] for f in frames)
    scale = max(1, -(-min_height // h))
    row = [f if f.shape[0] == h else cv2.resize(f, (round(f.shape[1] * h / f.shape[0]), h),
                                                 interpolation=cv2.INTER_AREA) for f in frames]
    strip = np.concatenate(row, axis=1)
    if scale > 1:
        strip = cv2.resize(strip, (strip.shape[1] * scale, h * scale),
                           interpolation=cv2.INTER_NEAREST)
    banner = np.zeros((BANNER * max(1, len(lines)) + 6, strip.shape[1], 3), np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(banner, text, (6, BANNER * (i + 1) - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                    (255, 255, 255), 1, cv2.LINE_AA)
    frame = np.concatenate([banner, strip], axis=0)
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2  # yuv420p needs even sizes
    if pad_h or pad_w:
        frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)))
    return frame


class RunVideo:
    """One episode's video: `add(images, lines)` per frame at a constant `fps`. The file is
    opened at the first frame (its size comes from it); `close()` finishes it."""

    def __init__(self, path: str | Path, fps: float, codec: str = "auto") -> None:
        self.path = Path(path)
        self.fps = fps
        self.codec = pick_codec(PLAYABLE_CODECS if codec == "auto" else (codec,))
        self._writer: VideoWriter | None = None
        self.frames = 0
        self._t0: float | None = None
        self._last: np.ndarray | None = None

    def add(self, images: Mapping[str, np.ndarray] | Sequence[np.ndarray],
            lines: Sequence[str], t: float | None = None) -> None:
        """One frame; with `t` (seconds, e.g. the camera stamp) frames that did not arrive
        (a subscriber that dropped some) are filled with the previous one, so the video keeps
        the run's time (gaps up to MAX_FILL_S; a later frame after a longer one just follows)."""
        if t is not None:
            if self._t0 is None:
                self._t0 = t
            due = round((t - self._t0) * self.fps)
            missing = due - self.frames
            if self._last is not None and 0 < missing <= MAX_FILL_S * self.fps:
                for _ in range(missing):
                    self._write(self._last)
        frame = compose(images, lines)
        self._write(frame)
        self._last = frame

    def _write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            self._writer = VideoWriter(self.path, self.fps, frame.shape[1], frame.shape[0],
                                       codec=self.codec, crf=23)
        elif frame.shape[:2] != (self._writer.height, self._writer.width):
            frame = np.ascontiguousarray(
                np.pad(frame, ((0, max(0, self._writer.height - frame.shape[0])),
                               (0, max(0, self._writer.width - frame.shape[1])), (0, 0)))[
                    : self._writer.height, : self._writer.width])
        self._writer.add(frame)
        self.frames += 1

    def close(self) -> Path | None:
        """The file written, or None if no frame came."""
        if self._writer is None:
            return None
        self._writer.close()
        return self.path

    def __enter__(self) -> RunVideo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FilmWorker:
    """A RunVideo fed from another thread: `submit` only queues (what a ROS callback can
    afford), a worker thread decodes, composes and encodes. A full queue drops the frame (the
    video's time filling covers it)."""

    def __init__(self, video: RunVideo, decode: Callable[[Any], np.ndarray] = lambda x: x,
                 max_pending: int = 30) -> None:
        import queue
        import threading

        self.video, self.decode = video, decode
        self.dropped = 0
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._thread = threading.Thread(target=self._run, name="film", daemon=True)
        self._thread.start()

    def submit(self, items: Sequence[Any], lines: Sequence[str], t: float | None) -> bool:
        import queue

        try:
            self._queue.put_nowait((list(items), list(lines), t))
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if self.error is not None:
                continue
            items, lines, t = job
            try:
                self.video.add([self.decode(x) for x in items], lines, t=t)
            except Exception as exc:  # kept, raised by close(): the run itself goes on
                self.error = exc

    def close(self) -> Path | None:
        """Everything queued written; the file (None without frames). Raises what failed."""
        self._queue.put(None)
        self._thread.join()
        path = self.video.close()
        if self.error is not None:
            raise RuntimeError(f"{self.video.path}: filming failed ({self.error})") \
                from self.error
        return path


def overlay_lines(episode: str, t: float, phase: str = "", plan_latency_ms: float | None = None
                  ) -> list[str]:
    """The standard overlay: episode and time on the first line, phase and plan latency on
    the second."""
    second = []
    if phase:
        second.append(f"phase {phase}")
    second.append("plan latency " + ("-" if plan_latency_ms is None
                                     else f"{plan_latency_ms:.0f} ms"))
    return [f"{episode}   t {t:6.2f} s", "   ".join(second)]


__all__ = ["FilmWorker", "RunVideo", "compose", "overlay_lines"]
