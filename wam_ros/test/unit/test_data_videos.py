"""Videos of runs: the cameras side by side with an overlay, H.264 where PyAV has it, from a
simulator rollout (`wam-ros sim rollout --video`) and an offline bag replay (`--video`)."""

from __future__ import annotations

import numpy as np
import pytest

from wam_ros.data.run_video import RunVideo, compose, overlay_lines
from wam_ros.data.video import read_video, video_info


def test_compose_puts_cameras_side_by_side_under_the_overlay() -> None:
    cams = {c: np.full((32, 40, 3), 60 * (i + 1), np.uint8) for i, c in enumerate("abc")}
    frame = compose(cams, overlay_lines("ep_000001", 1.25, "grasp", 42.0))
    scale = 8  # 32 px enlarged to at least 240
    assert frame.shape[1] == 3 * 40 * scale and frame.shape[0] % 2 == 0
    top = frame.shape[0] - 32 * scale
    assert top > 0 and frame[top:, :10].mean() == pytest.approx(60)
    assert frame[top:, -10:].mean() == pytest.approx(180)
    assert frame[:top].max() == 255  # the text
    assert overlay_lines("e", 0.0)[1] == "plan latency -"


def test_run_video_is_h264_with_every_frame(tmp_path) -> None:
    with RunVideo(tmp_path / "v.mp4", 30) as video:
        for t in range(12):
            img = np.zeros((48, 64, 3), np.uint8)
            img[:, : 4 * t + 4] = 200
            video.add([img, img[:, ::-1]], overlay_lines("ep", t / 30, "", 10.0))
    info = video_info(tmp_path / "v.mp4")
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    frames = list(read_video(tmp_path / "v.mp4"))
    assert len(frames) == 12
    assert [round(t * 30) for t, _ in frames] == list(range(12))
    assert RunVideo(tmp_path / "none.mp4", 30).close() is None
    # frames that did not arrive (a dropping subscriber) are filled: the video keeps time
    img = np.zeros((32, 32, 3), np.uint8)
    with RunVideo(tmp_path / "gaps.mp4", 30) as video:
        for t in (10.0, 10.1, 10.2, 10.2 + 1 / 30):
            video.add([img], ["gap"], t=t)
    assert video.frames == 8 and len(list(read_video(tmp_path / "gaps.mp4"))) == 8


@pytest.mark.slow
def test_sim_rollout_writes_a_video(tiny_checkpoint, tmp_path) -> None:
    from wam_ros.runtime import load_policy
    from wam_ros.sim.mujoco_sim import Simulator
    from wam_ros.sim.rollout import policy_rollout, stack_rollout

    policy = load_policy(tiny_checkpoint("cobot_magic"))
    with Simulator("cobot_magic", "pick_place") as sim:
        with RunVideo(tmp_path / "a.mp4", sim.robot.action_rate_hz) as video:
            policy_rollout(sim, policy, seed=5, execute=4, timeout=0.3, video=video)
        with RunVideo(tmp_path / "b.mp4", sim.robot.cameras[0].rate_hz) as video:
            stack_rollout(sim, policy, seed=5, scheduler="sync", latency_s=0.05,
                          timeout=0.3, video=video)
    assert len(list(read_video(tmp_path / "a.mp4"))) == 9  # 0.3 s at 30 Hz
    b = video_info(tmp_path / "b.mp4")
    assert b["frames"] >= 7 and b["width"] == 3 * 32 * 8  # three 32 px cameras, x8


@pytest.mark.slow
def test_offline_replay_writes_a_video_per_bag(tiny_checkpoint, tmp_path) -> None:
    from wam_ros.data.replay import ReplayOptions, replay
    from wam_ros.data.synthetic import write_synthetic_episode

    bag = write_synthetic_episode(tmp_path / "bag", "cobot_magic", 1.0, image_size=(48, 64))
    report = replay([bag], tiny_checkpoint("cobot_magic"), ReplayOptions(scheduler="sync"),
                    log=lambda _m: None, video_dir=tmp_path / "videos")
    (ep,) = report["episodes"]
    path = tmp_path / "videos" / f"{bag.name}.mp4"
    assert video_info(path)["frames"] == ep["observations"]


def test_film_worker_encodes_on_its_own_thread(tmp_path) -> None:
    from wam_ros.data.run_video import FilmWorker

    def decode(level: int) -> np.ndarray:
        return np.full((16, 16, 3), level, np.uint8)

    film = FilmWorker(RunVideo(tmp_path / "w.mp4", 10), decode=decode)
    for k in range(5):
        assert film.submit([10 * k, 20 * k], ["w"], t=k / 10)
    assert film.close() == tmp_path / "w.mp4" and film.dropped == 0
    assert len(list(read_video(tmp_path / "w.mp4"))) == 5
    broken = FilmWorker(RunVideo(tmp_path / "x.mp4", 10), decode=lambda _: 1 / 0)
    broken.submit([0], ["x"], t=0.0)
    with pytest.raises(RuntimeError, match="filming failed"):
        broken.close()


@pytest.mark.parametrize("caller_priority", [0, 5])
def test_an_av1_encoder_leaves_no_thread_real_time(tmp_path, caller_priority) -> None:
    """SVT-AV1 (LeRobot's codec) puts its worker threads and its caller under SCHED_FIFO 99
    where it may (root): a dataset export on the robot's computer would preempt ros2_control.
    VideoWriter gives the caller its own policy back and moves the encoder's threads to the
    normal one. A caller that was real-time (priority 5) stays at its priority."""
    import os
    import threading

    from wam_ros.data.video import VideoWriter, codec_available
    from wam_ros.runtime.threads import realtime_priority, set_realtime

    if not codec_available("libsvtav1"):
        pytest.skip("this PyAV build has no libsvtav1")
    out: dict[str, object] = {}

    def encode() -> None:
        out["why"] = set_realtime(caller_priority) if caller_priority else ""
        if out["why"]:
            return
        with VideoWriter(tmp_path / f"a{caller_priority}.mp4", 30, 64, 48, codec="libsvtav1",
                         crf=30, gop=2) as writer:
            for k in range(6):
                writer.add(np.full((48, 64, 3), 40 * k, np.uint8))
                out.setdefault("during", [])
                out["during"].append(realtime_priority())
        me = threading.get_native_id()
        out["others"] = {t: realtime_priority(t) for t in map(int, os.listdir("/proc/self/task"))
                         if t != me and realtime_priority(t)}
        out["after"] = realtime_priority()

    t = threading.Thread(target=encode)
    t.start()
    t.join()
    if out["why"]:
        pytest.skip(f"no real-time scheduling here: {out['why']}")
    assert out["during"] == [caller_priority] * 6 and out["after"] == caller_priority
    assert out["others"] == {}
    assert [f for _, f in read_video(tmp_path / f"a{caller_priority}.mp4")][-1].mean() > 150
