"""Video files through PyAV (FFmpeg's libraries, bundled in the `av` wheel): an encoder that
LeRobot datasets and our run videos use, and a decoder. ROS-free.

Frames are (H, W, 3) uint8 RGB. A frame's presentation time is its index / fps exactly (time
base 1 / fps), so a reader that looks frames up by timestamp (LeRobot's) finds each one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import nullcontext
from fractions import Fraction
from pathlib import Path

import numpy as np

from wam_ros.runtime.threads import keep_priorities

# What a player opens everywhere first; LeRobot's default (AV1) first for datasets.
PLAYABLE_CODECS = ("libx264", "h264", "mpeg4")
DATASET_CODECS = ("libsvtav1", "libx264", "h264", "mpeg4")


def codec_available(name: str) -> bool:
    import av

    try:
        av.codec.Codec(name, "w")
    except Exception:  # av raises UnknownCodecError or ValueError depending on the version
        return False
    return True


def pick_codec(preferred: tuple[str, ...] | list[str]) -> str:
    """The first encoder of `preferred` this PyAV build has."""
    for name in preferred:
        if codec_available(name):
            return name
    raise RuntimeError(f"none of the video encoders {list(preferred)} is in this PyAV build")


def codec_family(name: str) -> str:
    """Encoder name -> the codec name a container / LeRobot's info.json reports."""
    return {"libsvtav1": "av1", "libaom-av1": "av1", "libx264": "h264", "h264": "h264",
            "libx265": "hevc", "mpeg4": "mpeg4"}.get(name, name)


class VideoWriter:
    """Frames -> one video stream in an .mp4 file, at a constant `fps`.

    `crf` (quality, lower is better; None: the encoder's default) and `gop` (a key frame every
    `gop` frames: 2 as LeRobot does, so that random access decodes at most one extra frame)
    apply where the encoder takes them. Width and height must be even (yuv420p)."""

    def __init__(self, path: str | Path, fps: float, width: int, height: int,
                 codec: str = "libx264", crf: int | None = 23, gop: int | None = None,
                 pix_fmt: str = "yuv420p") -> None:
        import av

        if width % 2 or height % 2:
            raise ValueError(f"video size {width}x{height}: width and height must be even")
        logging.getLogger("libav").setLevel(logging.ERROR)
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its configuration otherwise
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = Fraction(fps).limit_denominator(1001)
        self.width, self.height = width, height
        options: dict[str, str] = {}
        if gop is not None:
            options["g"] = str(gop)
        if crf is not None and codec != "mpeg4":
            options["crf"] = str(crf)
        if codec == "libsvtav1":
            options["preset"] = "12"  # LeRobot's choice: the fastest preset
        if codec == "mpeg4":
            options["qscale"] = "3"
        self.codec = codec
        self._container = av.open(str(self.path), "w")
        try:
            self._stream = self._container.add_stream(codec, rate=self.fps, options=options)
            self._stream.width, self._stream.height = width, height
            self._stream.pix_fmt = pix_fmt
            if codec == "mpeg4":
                self._stream.bit_rate = max(400_000, width * height * 8)
        except BaseException:
            self._container.close()
            raise
        self.frames = 0
        self._closed = False

    def add(self, rgb: np.ndarray) -> None:
        import av

        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"frame {rgb.shape} {rgb.dtype}; expected "
                             f"({self.height}, {self.width}, 3) uint8")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.frames
        frame.time_base = 1 / self.fps
        # the encoder opens, and starts its threads, on the first frame
        with keep_priorities() if self.frames == 0 else nullcontext():
            packets = self._stream.encode(frame)
        for packet in packets:
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        finally:
            self._container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_video(path: str | Path) -> Iterator[tuple[float, np.ndarray]]:
    """(presentation time in seconds, (H, W, 3) uint8 RGB) of every frame, in order."""
    import av

    logging.getLogger("libav").setLevel(logging.ERROR)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            t = float(frame.pts * frame.time_base) if frame.pts is not None else float(
                frame.time or 0.0)
            yield t, frame.to_ndarray(format="rgb24")


def video_info(path: str | Path) -> dict[str, object]:
    """Codec, size, pixel format, frame rate and frame count of the first video stream."""
    import av

    with av.open(str(path)) as container:
        s = container.streams.video[0]
        return {"codec": s.codec_context.name, "width": s.codec_context.width,
                "height": s.codec_context.height, "pix_fmt": s.codec_context.pix_fmt,
                "fps": float(s.average_rate or s.guessed_rate or 0), "frames": s.frames}


__all__ = ["DATASET_CODECS", "PLAYABLE_CODECS", "VideoWriter", "codec_available",
           "codec_family", "pick_codec", "read_video", "video_info"]
