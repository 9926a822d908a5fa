"""Recording benchmark: what the recorder keeps at the robot's full camera load, and how fast
its bags turn into a dataset and replay.

    wam-ros bench record [--robot cobot_magic] [--seconds 20] [--json out.json]

1. record: a publisher in this process sends the robot's cameras at their configured size and
   rate (CobotMagic: 3 x 640x480 rgb8 at 30 Hz, 83 MB/s), follower joint states at the control
   rate and the leader topics at 50 Hz (best effort, as camera drivers do); the recorder node
   runs as its own process (FastDDS profile of config/fastdds.xml). Reported per topic:
   published during the episode, recorded, lost; the recorder's dropped / late counters, its
   CPU share, write throughput and segment-close (flush) times.
2. dataset: `dataset build` of that bag to 224x224 (frames/s, camera images/s).
3. replay: offline replay of that bag with a tiny checkpoint (speed relative to real time).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_record(robot: str, seconds: float, workdir: Path, flush_s: float) -> dict[str, Any]:
    import rclpy
    from sensor_msgs.msg import Image, JointState
    from std_srvs.srv import Trigger

    from wam_ros.core.robot import RobotSpec
    from wam_ros.data.bag_reader import open_bag
    from wam_ros.data.teleop import LeaderMap
    from wam_ros.nodes import conversions, topics
    from wam_ros.nodes.common import PoolExecutor
    from wam_ros.testing.process import NodeProcess, python_module_cmd, spin_until

    spec = RobotSpec.load(robot)
    leaders = LeaderMap(spec)
    rec = NodeProcess(python_module_cmd(
        "wam_ros.nodes.recorder_node", "--ros-args", "-p", f"robot:={robot}",
        "-p", f"output_dir:={workdir / 'episodes'}", "-p", f"flush_interval_s:={flush_s}",
        "-p", "min_free_mb:=512.0"), log_path=str(workdir / "recorder.log"))
    rclpy.init()
    node = rclpy.create_node("bench_publisher")
    published: dict[str, int] = {}
    counting = [False]

    def pub(topic: str, msg: Any, publisher: Any) -> None:
        publisher.publish(msg)
        if counting[0]:
            published[topic] = published.get(topic, 0) + 1

    frames = []
    for i, cam in enumerate(spec.cameras):
        img = np.full((cam.height, cam.width, 3), 40 * i, np.uint8)
        msg = conversions.rgb_to_image(img, 0.0, cam.name)
        frames.append((cam, msg, node.create_publisher(Image, cam.topic, topics.SENSOR_QOS)))

    def cameras() -> None:
        now = node.get_clock().now().to_msg()
        for cam, msg, p in frames:
            msg.header.stamp = now
            pub(cam.topic, msg, p)

    js_pub = node.create_publisher(JointState, spec.joint_state_topic, topics.SENSOR_QOS)
    lead_pubs = {s.name: (s, node.create_publisher(JointState, s.topic, topics.SENSOR_QOS))
                 for s in leaders.sources if s.type == "joint_state"}
    home = spec.joint_to_action(spec.home_vector())

    def joints() -> None:
        now = node.get_clock().now().nanoseconds * 1e-9
        pub(spec.joint_state_topic, conversions.make_joint_state(
            spec.action_layout, spec.home_vector(), now), js_pub)
        values = leaders.to_messages(home)
        for name, (src, p) in lead_pubs.items():
            pub(src.topic, conversions.make_joint_state(src.names, values[name], now), p)

    node.create_timer(1.0 / spec.cameras[0].rate_hz, cameras)
    node.create_timer(1.0 / spec.control_rate_hz, joints)
    executor = PoolExecutor(num_threads=2)
    executor.add_node(node)
    result: dict[str, Any] = {"robot": robot, "seconds": seconds, "flush_interval_s": flush_s,
                              "cameras": [f"{c.width}x{c.height} {c.encoding} "
                                          f"{c.rate_hz:g} Hz" for c in spec.cameras]}
    try:
        start = node.create_client(Trigger, topics.RECORD_START)
        stop = node.create_client(Trigger, topics.RECORD_STOP)
        assert spin_until(executor, start.service_is_ready, 60.0), rec.output()
        spin_until(executor, lambda: False, 2.0)  # publishers and subscriptions matched
        cpu0, t0 = _cpu_seconds(rec.proc.pid), time.monotonic()
        future = start.call_async(Trigger.Request())
        spin_until(executor, future.done, 30.0)
        counting[0] = True
        assert future.result().success, future.result().message
        bag = Path(future.result().message)
        spin_until(executor, lambda: False, seconds)
        counting[0] = False
        future = stop.call_async(Trigger.Request())
        spin_until(executor, future.done, 60.0)
        wall = time.monotonic() - t0
        cpu = _cpu_seconds(rec.proc.pid) - cpu0
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        rec.stop()
    recorded = open_bag(bag)
    size = sum(f.stat().st_size for f in bag.iterdir())
    per_topic = {t: {"published": published.get(t, 0), "recorded": recorded.counts.get(t, 0),
                     "lost": max(0, published.get(t, 0) - recorded.counts.get(t, 0))}
                 for t in sorted(set(published) | set(recorded.counts))}
    c = recorded.custom
    result.update({
        "bag": str(bag), "topics": per_topic,
        "published": sum(published.values()), "recorded": recorded.message_count,
        "lost": sum(v["lost"] for v in per_topic.values()),
        "recorder_dropped": int(c.get("dropped", 0)), "recorder_late": int(c.get("late", 0)),
        "bag_mb": size / 1e6, "write_mb_s": size / 1e6 / wall,
        "recorder_cpu_share": cpu / wall,
        "flush_ms.p50": float(c.get("flush_ms_p50", 0)),
        "flush_ms.max": float(c.get("flush_ms_max", 0)),
        "segments": len(list(bag.glob("*.mcap"))),
    })
    return result


def bench_dataset(bag: Path, out: Path) -> dict[str, Any]:
    from wam_ros.data.convert import BuildOptions, build_dataset

    t0 = time.perf_counter()
    (s,) = build_dataset([bag], out, BuildOptions(image_size=(224, 224)), progress=False,
                         log=lambda _m: None)
    wall = time.perf_counter() - t0
    cams = sum(1 for t in s.streams if "image" in t or "camera" in t)
    return {"frames": s.frames, "episode_s": s.duration_s, "wall_s": wall,
            "frames_per_s": s.frames / wall, "images_per_s": s.frames * cams / wall,
            "speed_x": s.duration_s / wall}


def bench_replay(bag: Path, workdir: Path, robot: str) -> dict[str, Any]:
    from wam_ros.data.replay import ReplayOptions, replay
    from wam_ros.testing.checkpoints import make_tiny_checkpoint

    ckpt = make_tiny_checkpoint(workdir / "tiny_ckpt", robot)
    out = {}
    for scheduler in ("sync", "async"):
        r = replay([bag], ckpt, ReplayOptions(scheduler=scheduler), log=lambda _m: None)
        out[scheduler] = {"speed_x": r["speed_x"], "chunks": r["chunks"],
                          "latency_ms.p50": r["latency_ms.p50"],
                          "latency_ms.p99": r["latency_ms.p99"]}
    return out


def run(args: argparse.Namespace) -> int:
    """`wam-ros bench record` (cli/bench.py)."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="wam_bench_rec_"))
    workdir.mkdir(parents=True, exist_ok=True)
    report = {"record": bench_record(args.robot, args.seconds, workdir, args.flush_interval)}
    bag = Path(report["record"]["bag"])
    report["dataset"] = bench_dataset(bag, workdir / "data")
    report["replay"] = bench_replay(bag, workdir, args.robot)
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0

