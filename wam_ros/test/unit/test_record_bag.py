"""Episode bags: segmented MCAP writing survives SIGKILL, any rosbag2 bag reads back, the
recorder refuses bad destinations up front and counts what it drops. No ROS needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from wam_ros.data.bag_reader import open_bag
from wam_ros.data.bag_writer import EpisodeBagWriter, update_custom_data
from wam_ros.data.cdr import deserialize, header_stamp_ns, with_header_stamp
from wam_ros.data.recorder import Recorder, RecorderConfig, RecordingRefused
from wam_ros.data.synthetic import image_cdr, joint_state_cdr, write_synthetic_episode

JS = "sensor_msgs/msg/JointState"
IMG = "sensor_msgs/msg/Image"


def _listed_files(bag: Path) -> list[str]:
    doc = yaml.safe_load((bag / "metadata.yaml").read_text())
    return doc["rosbag2_bagfile_information"]["relative_file_paths"]


def test_segments_roll_on_the_flush_interval_and_always_read_back(tmp_path):
    clock = [0.0]
    w = EpisodeBagWriter(tmp_path / "ep", flush_interval_s=0.5, fsync=False,
                         monotonic=lambda: clock[0], custom_data={"robot": "cobot_magic"})
    w.add_topic("/joint_states", JS)
    raws = []
    for i in range(60):  # 1.2 s at 50 Hz
        clock[0] = i * 0.02
        raws.append(joint_state_cdr(["a"], [float(i)], 10**9 + i * 20_000_000))
        w.write("/joint_states", 10**9 + i * 20_000_000, raws[-1])
        # at every moment the bag opens and holds exactly the closed segments
        listed = _listed_files(tmp_path / "ep")
        bag = open_bag(tmp_path / "ep")
        assert bag.counts.get("/joint_states", 0) == sum(
            f["message_count"] for f in yaml.safe_load(
                (tmp_path / "ep" / "metadata.yaml").read_text()
            )["rosbag2_bagfile_information"]["files"]) and len(listed) == w.closed_segments
    assert w.closed_segments == 2
    w.close()
    bag = open_bag(tmp_path / "ep")
    msgs = list(bag.messages())
    assert [m.data for m in msgs] == raws  # exact bytes, in order, across 3 segments
    assert bag.custom["robot"] == "cobot_magic" and bag.storage == "mcap"
    assert sorted(p.name for p in (tmp_path / "ep").iterdir()) == [
        "ep_0.mcap", "ep_1.mcap", "ep_2.mcap", "metadata.yaml"]
    # the rosbags reader (what ros2 bag conventions expect) opens it directly too
    from rosbags.rosbag2 import Reader

    with Reader(tmp_path / "ep") as r:
        assert r.message_count == 60 and len(r.connections) == 1


WRITER = textwrap.dedent("""
    import sys, time, numpy as np
    from wam_ros.data.bag_writer import EpisodeBagWriter
    from wam_ros.data.synthetic import image_cdr, joint_state_cdr
    w = EpisodeBagWriter(sys.argv[1], flush_interval_s=0.2, fsync=True)
    w.add_topic("/joint_states", "sensor_msgs/msg/JointState")
    w.add_topic("/camera", "sensor_msgs/msg/Image")
    img = np.zeros((240, 320, 3), np.uint8)
    i = 0
    while True:
        stamp = 10**9 + i * 10_000_000
        w.write("/joint_states", stamp, joint_state_cdr(["a"], [float(i)], stamp))
        if i % 3 == 0:
            w.write("/camera", stamp, image_cdr(img, stamp))
        w.roll_if_due()
        i += 1
        time.sleep(0.002)
""")


def test_a_writer_killed_mid_episode_leaves_a_bag_with_every_closed_segment(tmp_path):
    bag = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(bag)])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (bag / "metadata.yaml").is_file() and len(_listed_files(bag)) >= 3:
                break
            time.sleep(0.05)
        time.sleep(0.1)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    listed = _listed_files(bag)
    assert len(listed) >= 3
    closed = open_bag(bag)
    values = [deserialize(m.data, m.msgtype).position[0]
              for m in closed.messages(["/joint_states"])]
    # everything up to the last closed segment, no holes
    assert len(values) > 0 and values == list(np.arange(len(values), dtype=float))
    assert closed.counts["/camera"] > 0
    # the unfinished segment adds what reached the disk, still without holes
    full = open_bag(bag, include_partial=True)
    more = [deserialize(m.data, m.msgtype).position[0] for m in full.messages(["/joint_states"])]
    assert more[: len(values)] == values and more == list(np.arange(len(more), dtype=float))


def test_recorder_refuses_bad_destinations_before_the_episode(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    rec = Recorder(RecorderConfig(str(blocker / "episodes"), min_free_mb=1), "cobot_magic",
                   {"/joint_states": JS}, log=lambda _m: None)
    try:
        with pytest.raises(RecordingRefused, match="not writable"):
            rec.start()
        assert not rec.recording
    finally:
        rec.close()
    out = tmp_path / "episodes"
    rec = Recorder(RecorderConfig(str(out), min_free_mb=1e12), "cobot_magic",
                   {"/joint_states": JS}, log=lambda _m: None)
    try:
        with pytest.raises(RecordingRefused, match=r"MiB free, the recorder needs at least"):
            rec.start()
        assert not any(p.is_dir() for p in out.iterdir())  # no episode was begun
    finally:
        rec.close()


def test_recorder_episode_control_counts_and_metadata(tmp_path):
    now = [50 * 10**9]
    rec = Recorder(RecorderConfig(str(tmp_path), min_free_mb=1, flush_interval_s=0.1,
                                  late_threshold_s=0.2, fsync=False),
                   "cobot_magic", {"/joint_states": JS, "/cam": IMG},
                   clock=lambda: now[0], log=lambda _m: None)
    try:
        assert not rec.offer("/joint_states", joint_state_cdr(["a"], [0.0], now[0]))
        path = rec.start(task="wave", note="first try")
        gid = b"publisher-1"
        for i in range(20):
            now[0] += 20_000_000
            seq = i + 1 if i < 10 else i + 3  # two messages lost in transport
            assert rec.offer("/joint_states", joint_state_cdr(["a"], [float(i)], now[0]),
                             publisher=gid, sequence=seq)
        old = now[0] - 500_000_000  # stamped half a second before it arrives: late
        rec.offer("/cam", image_cdr(np.zeros((8, 8, 3), np.uint8), old))
        status = rec.status()
        assert status.state == "recording" and status.counts == {"/joint_states": 20,
                                                                 "/cam": 1}
        assert status.dropped == {"/joint_states": 2} and status.late == {"/cam": 1}
        assert "REC" in status.line() and "dropped 2" in status.line()
        assert rec.stop() == path
        assert not rec.offer("/joint_states", joint_state_cdr(["a"], [0.0], now[0]))
        rec.mark(True)
        bag = open_bag(path)
        assert bag.counts == {"/joint_states": 20, "/cam": 1}
        c = bag.custom
        assert (c["robot"], c["task"], c["note"], c["success"], c["complete"]) == (
            "cobot_magic", "wave", "first try", "true", "true")
        assert c["dropped"] == "2" and c["late"] == "1"
        assert float(c["stop_time"]) > float(c["start_time"])
        # a second episode, discarded: nothing of it stays
        second = rec.start(task="wave")
        rec.offer("/joint_states", joint_state_cdr(["a"], [0.0], now[0]))
        rec.discard()
        assert not second.exists() and path.exists()
        assert rec.mark(False) == path and open_bag(path).custom["success"] == "false"
    finally:
        rec.close()


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path):
    rec = Recorder(RecorderConfig(str(tmp_path), min_free_mb=1, queue_mb=1.0, fsync=False),
                   "cobot_magic", {"/cam": IMG}, log=lambda _m: None)
    try:
        rec.start()
        big = image_cdr(np.zeros((480, 640, 3), np.uint8), 1)
        t0 = time.perf_counter()
        accepted = sum(rec.offer("/cam", big) for _ in range(40))
        assert time.perf_counter() - t0 < 1.0  # offers never wait for the disk
        status = rec.status()
        assert accepted + status.dropped.get("/cam", 0) == 40 and accepted >= 1
        path = rec.stop()
        assert open_bag(path).counts["/cam"] == accepted
    finally:
        rec.close()


def test_header_stamps_read_and_patched_in_serialised_bytes():
    raw = joint_state_cdr(["a", "b"], [1.0, 2.0], 12_345_678_901)
    assert header_stamp_ns(raw, JS) == 12_345_678_901
    moved = with_header_stamp(raw, JS, 99_000_000_007)
    msg = deserialize(moved, JS)
    assert header_stamp_ns(moved, JS) == 99_000_000_007 and list(msg.position) == [1.0, 2.0]
    assert header_stamp_ns(b"\x00\x01\x00\x00" + bytes(8), "std_msgs/msg/String") is None


def test_sqlite3_single_file_and_metadata_less_bags_read(tmp_path):
    sq = write_synthetic_episode(tmp_path / "sq", "agibot_g1", 1.0, storage="sqlite3")
    bag = open_bag(sq)
    assert bag.storage == "sqlite3" and bag.counts["/teleop/joint_command"] == 50
    assert bag.custom["robot"] == "agibot_g1"
    single = open_bag(next(sq.glob("*.db3")))  # a bare .db3 file
    assert single.counts == bag.counts
    # a recorder / `ros2 bag record` killed before writing metadata.yaml
    mc = write_synthetic_episode(tmp_path / "mc", "cobot_magic", 1.0)
    (mc / "metadata.yaml").unlink()
    bare = open_bag(mc)
    assert bare.counts["/joint_states"] == 50
    stamps = [m.timestamp for m in bare.messages()]
    assert stamps == sorted(stamps)
    # a Humble-era metadata.yaml (version 5: no type hashes, no ros_distro) still opens
    humble = tmp_path / "humble"
    write_synthetic_episode(humble, "cobot_magic", 0.5, storage="sqlite3")
    doc = yaml.safe_load((humble / "metadata.yaml").read_text())
    info = doc["rosbag2_bagfile_information"]
    info["version"] = 5
    for key in ("ros_distro", "custom_data"):
        info.pop(key, None)
    for t in info["topics_with_message_count"]:
        t["topic_metadata"].pop("type_description_hash", None)
        t["topic_metadata"]["offered_qos_profiles"] = ""
    (humble / "metadata.yaml").write_text(yaml.safe_dump(doc))
    assert open_bag(humble).counts["/joint_states"] == 25


def test_custom_data_update_is_atomic_and_keeps_the_rest(tmp_path):
    path = write_synthetic_episode(tmp_path / "b", "cobot_magic", 0.5)
    update_custom_data(path, success=False, note="dropped the cup")
    custom = open_bag(path).custom
    assert custom["success"] == "false" and custom["note"] == "dropped the cup"
    assert custom["robot"] == "cobot_magic"
    assert not list(path.glob("*.tmp"))


def test_zstd_chunked_mcap_as_ros2_bag_record_writes_it(tmp_path):
    """`ros2 bag record -s mcap` writes zstd-compressed chunks; such a file reads, alone or in
    a directory, and so does one cut short (its writer killed: no summary, no footer)."""
    from mcap.writer import CompressionType, Writer

    from wam_ros.data.cdr import message_definition

    path = tmp_path / "ros2bag" / "ros2bag_0.mcap"
    path.parent.mkdir()
    with open(path, "wb") as f:
        w = Writer(f, chunk_size=64 * 1024, compression=CompressionType.ZSTD)
        w.start(profile="ros2", library="rosbag2")
        schema = w.register_schema(JS, "ros2msg", message_definition(JS)[0].encode())
        channel = w.register_channel("/joint_states", "cdr", schema,
                                     metadata={"offered_qos_profiles": ""})
        for i in range(2000):
            stamp = 10**9 + i * 10**7
            w.add_message(channel, log_time=stamp, publish_time=stamp, sequence=i,
                          data=joint_state_cdr(["a", "b"], [float(i), 0.0], stamp))
        w.finish()
    assert open_bag(path).counts == {"/joint_states": 2000}
    assert open_bag(path.parent).counts == {"/joint_states": 2000}
    cut = tmp_path / "cut"
    cut.mkdir()
    data = path.read_bytes()
    (cut / "cut_0.mcap").write_bytes(data[: len(data) // 2])
    salvaged = [deserialize(m.data, m.msgtype).position[0]
                for m in open_bag(cut).messages()]
    assert 0 < len(salvaged) < 2000 and salvaged == list(np.arange(len(salvaged), dtype=float))


def test_a_disk_that_fills_up_mid_episode_stops_it_and_keeps_the_closed_segments(
        tmp_path, monkeypatch):
    import errno

    clock = [0]
    rec = Recorder(RecorderConfig(str(tmp_path), min_free_mb=1, flush_interval_s=0.05,
                                  fsync=False), "cobot_magic", {"/joint_states": JS},
                   clock=lambda: clock[0], log=lambda _m: None)
    try:
        path = rec.start()
        for i in range(20):
            clock[0] += 10_000_000
            rec.offer("/joint_states", joint_state_cdr(["a"], [float(i)], clock[0]))
            time.sleep(0.01)
        deadline = time.monotonic() + 5
        while _listed_files(path) == [] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _listed_files(path)

        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(EpisodeBagWriter, "write", full)
        rec.offer("/joint_states", joint_state_cdr(["a"], [99.0], clock[0]))
        deadline = time.monotonic() + 5
        while rec.recording and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not rec.recording and "No space left" in rec.status().error
        kept = [deserialize(m.data, m.msgtype).position[0] for m in open_bag(path).messages()]
        assert kept == list(np.arange(len(kept), dtype=float)) and len(kept) >= 1
    finally:
        rec.close()
