"""Live bag playback schedule (ROS-free): what to publish when, for `wam-ros replay --live`.

`Playback.events()` yields the bag's messages (raw CDR, unchanged) and /clock ticks in bag-time
order, each with the wall-clock offset at which to publish it (bag time / rate). With `loop`,
every pass is shifted by the bag's duration plus one clock period, in the clock and in the
header stamps of messages that have one (patched in the serialised bytes), so time never runs
backwards for the nodes listening; everything else is published byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from wam_ros.data.bag_reader import Bag
from wam_ros.data.cdr import header_stamp_ns, with_header_stamp


@dataclass(frozen=True)
class PlaybackSettings:
    """bag: bag directory / file. rate: playback speed (2 = twice real time). loop: start over
    at the end. clock_hz: /clock messages per second of bag time (0 = none). topics: only
    these (empty = all). start_delay_s: wait before the first message (late joiners).
    exit_when_done: the node ends after the last message (no loop)."""

    bag: str = ""
    rate: float = 1.0
    loop: bool = False
    clock_hz: float = 100.0
    topics: tuple[str, ...] = ()
    start_delay_s: float = 0.5
    include_partial: bool = True
    exit_when_done: bool = True

    def __post_init__(self) -> None:
        if not self.bag:
            raise ValueError("bag: allowed: a bag directory or .mcap / .db3 file")
        if not 0.0 < self.rate <= 100.0:
            raise ValueError(f"rate: got {self.rate!r}; allowed: 0 < rate <= 100")
        if not 0.0 <= self.clock_hz <= 1000.0:
            raise ValueError(f"clock_hz: got {self.clock_hz!r}; allowed: 0..1000")
        if self.start_delay_s < 0:
            raise ValueError(f"start_delay_s: got {self.start_delay_s!r}; allowed: >= 0")


@dataclass(frozen=True)
class Event:
    wall_s: float  # seconds after playback start
    time_ns: int  # bag time (shifted by the loop offset)
    topic: str | None  # None: a /clock tick
    msgtype: str = ""
    data: bytes = b""


class Playback:
    def __init__(self, bag: Bag, settings: PlaybackSettings) -> None:
        self.bag = bag
        self.settings = settings
        wanted = set(settings.topics) if settings.topics else None
        if wanted is not None:
            unknown = sorted(wanted - set(bag.topics))
            if unknown:
                raise ValueError(f"topics {unknown} are not in {bag.path}; it has "
                                 f"{sorted(bag.topics)}")
        self.wanted = wanted
        first = last = None
        if wanted is None and bag.message_count:
            first, last = bag.time_range()  # from the index: no pass over the images
        else:
            for m in bag.messages(wanted):
                first = m.timestamp if first is None else first
                last = m.timestamp
        if first is None or last is None:
            raise ValueError(f"{bag.path}: no messages to play")
        self.start_ns, self.end_ns = first, last
        self.clock_period_ns = int(1e9 / settings.clock_hz) if settings.clock_hz > 0 else 0
        self.loop_ns = (last - first) + max(self.clock_period_ns, 1_000_000)
        self.passes = 0

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) * 1e-9

    def events(self) -> Iterator[Event]:
        """Messages and clock ticks in order; endless with loop."""
        rate = self.settings.rate
        while True:
            offset = self.passes * self.loop_ns
            next_clock = self.start_ns
            for m in self.bag.messages(self.wanted):
                while self.clock_period_ns and next_clock <= m.timestamp:
                    t = next_clock + offset
                    yield Event((t - self.start_ns) * 1e-9 / rate, t, None)
                    next_clock += self.clock_period_ns
                t = m.timestamp + offset
                data = m.data
                if offset:
                    stamp = header_stamp_ns(data, m.msgtype)
                    if stamp:
                        data = with_header_stamp(data, m.msgtype, stamp + offset)
                yield Event((t - self.start_ns) * 1e-9 / rate, t, m.topic, m.msgtype, data)
            self.passes += 1
            if not self.settings.loop:
                return


__all__ = ["Event", "Playback", "PlaybackSettings"]
