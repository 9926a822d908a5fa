"""The policy runner: chunk fields, reset, SAI, step caching, input checks, name registries."""

from __future__ import annotations

import numpy as np
import pytest

from wam_ros.core.types import ActionSpace
from wam_ros.runtime import load_policy
from wam_ros.runtime.backends import BackendUnavailable
from wam_ros.testing.checkpoints import fake_observation, make_tiny_checkpoint

ROBOT = "cobot_magic"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


def _obs(policy, i: int):
    return fake_observation(ROBOT, policy.meta.image_size, i)


def test_meta_and_chunk_fields(ckpt) -> None:
    policy = load_policy(ckpt, memory="kv", mode="joint")
    meta = policy.meta
    assert meta.robot == ROBOT and meta.action_space == ActionSpace.JOINT_DELTA
    assert meta.camera_names == ("cam_high", "cam_left_wrist", "cam_right_wrist")
    assert meta.action_dim == 14 and len(meta.action_names) == 14
    ids = []
    for i in range(3):
        obs = _obs(policy, i)
        chunk = policy.infer(obs)
        ids.append(chunk.chunk_id)
        assert chunk.stamp == obs.stamp
        assert chunk.actions.shape == (meta.horizon, meta.action_dim)
        assert chunk.actions.dtype == np.float32 and np.all(np.isfinite(chunk.actions))
        assert chunk.space == ActionSpace.JOINT_DELTA and chunk.dt == meta.dt
        assert chunk.inference_time > 0 and chunk.names == meta.action_names
        assert "skipped_steps" in chunk.extras
        # reference: the joint state at the observation, joint units
        assert np.array_equal(chunk.reference, obs.joint_positions)
    assert ids == [0, 1, 2]
    episode = policy.episode_id
    policy.reset()
    assert policy.episode_id == episode + 1 and policy.infer(_obs(policy, 0)).chunk_id == 0


def test_same_inputs_same_chunk(ckpt) -> None:
    a = load_policy(ckpt, memory="ttt", mode="two_stage")
    b = load_policy(ckpt, memory="ttt", mode="two_stage")
    for i in range(3):
        assert np.array_equal(a.infer(_obs(a, i)).actions, b.infer(_obs(b, i)).actions)


def test_noise_scale_tempers_the_flow_sample(ckpt) -> None:
    """noise_scale scales the flow's starting noise: 0 integrates from the origin (the same
    chunk whatever the noise seed), 1 is the checkpoint's default, outside 0..2 is refused."""
    zero = [load_policy(ckpt, seed=s, noise_scale=0.0) for s in (0, 1)]
    assert np.array_equal(zero[0].infer(_obs(zero[0], 0)).actions,
                          zero[1].infer(_obs(zero[1], 0)).actions)
    full = [load_policy(ckpt, seed=s, noise_scale=1.0) for s in (0, 1)]
    a0, a1 = (p.infer(_obs(p, 0)).actions for p in full)
    assert not np.allclose(a0, a1)
    default = load_policy(ckpt, seed=0)
    assert default.noise_scale == 1.0
    assert np.array_equal(default.infer(_obs(default, 0)).actions, a0)
    # tempering pulls the sample toward the noise-free one (same seed: the same noise, scaled)
    fresh = {k: load_policy(ckpt, seed=1, noise_scale=k) for k in (0.0, 0.5)}
    a_zero, a_half = (p.infer(_obs(p, 0)).actions for p in fresh.values())
    assert np.abs(a_half - a_zero).mean() < np.abs(a1 - a_zero).mean()
    for bad in (-0.1, 2.5, float("nan")):
        with pytest.raises(ValueError, match="noise_scale"):
            load_policy(ckpt, noise_scale=bad)


@pytest.mark.parametrize("memory", ["kv", "ttt"])
@pytest.mark.parametrize("mode", ["joint", "fast", "two_stage"])
def test_sai_with_s_mid_zero_equals_infer(ckpt, memory: str, mode: str) -> None:
    plain = load_policy(ckpt, memory=memory, mode=mode, flow_steps=4)
    spec = load_policy(ckpt, memory=memory, mode=mode, flow_steps=4)
    for i in range(4):
        expected = plain.infer(_obs(plain, i))
        handle = spec.speculate(s_mid=0.0)
        got = spec.complete(handle, _obs(spec, i))
        np.testing.assert_allclose(got.actions, expected.actions, rtol=0, atol=1e-6)
        assert got.chunk_id == expected.chunk_id
        assert got.extras["speculative_steps"] == 0.0


@pytest.mark.parametrize("memory", ["kv", "ttt"])
def test_sai_speculates_without_polluting_long_term_memory(ckpt, memory: str) -> None:
    plain = load_policy(ckpt, memory=memory, mode="joint", flow_steps=4)
    spec = load_policy(ckpt, memory=memory, mode="joint", flow_steps=4)
    plain.infer(_obs(plain, 0))
    spec.infer(_obs(spec, 0))
    expected = plain.infer(_obs(plain, 1))
    handle = spec.speculate(s_mid=0.5)
    assert handle.steps_done == 2
    got = spec.complete(handle, _obs(spec, 1))
    assert got.extras["speculative_steps"] == 2.0
    assert np.all(np.isfinite(got.actions))
    assert np.abs(got.actions - expected.actions).max() > 1e-7  # surrogate context was used
    # long-term memory holds only the real observations: identical to the plain runner
    if memory == "ttt":
        for a, b in zip(plain.ttt.weights, spec.ttt.weights):
            np.testing.assert_allclose(a, b, atol=1e-6)
    else:
        for (ka, va), (kb, vb) in zip(plain.kv.entries, spec.kv.entries):
            np.testing.assert_allclose(ka, kb, atol=1e-6)
            np.testing.assert_allclose(va, vb, atol=1e-6)


def test_sai_surrogate_stands_for_the_expected_observation_time(ckpt) -> None:
    """speculate(at=...) takes the surrogate at the instant the real observation is expected:
    the last measured state with the arms moved as the last plan commands up to then (the
    grippers as measured), and tokens between the last observation's and the predicted
    latent by the share of a chunk elapsed; at=None: one chunk after the last observation."""
    policy = load_policy(ckpt, memory="kv", mode="joint", flow_steps=4)
    obs = _obs(policy, 0)
    policy.infer(obs)
    stamp, plan = policy._plan
    measured = policy.robot.joint_to_action(obs.joint_positions)
    grip = policy.robot.gripper_mask()
    dt, horizon = policy.cfg.dt, policy.cfg.horizon

    def expected(moved: np.ndarray) -> np.ndarray:
        return np.where(grip, measured, measured + moved)

    at = stamp + 2.5 * dt
    tokens, state = policy._surrogate(at)
    np.testing.assert_allclose(state, expected(0.5 * (plan[2] + plan[3]) - plan[0]), atol=1e-5)
    frac = 2.5 / horizon
    np.testing.assert_allclose(
        tokens, (1 - frac) * policy._last_obs_tokens + frac * policy._pred_latent, atol=1e-6)
    # one chunk later (None) or beyond: the plan's end and the predicted latent
    for late in (None, stamp + 10 * horizon * dt):
        late_tokens, late_state = policy._surrogate(late)
        np.testing.assert_allclose(late_state, expected(plan[-1] - plan[0]), atol=1e-5)
        np.testing.assert_allclose(late_tokens, policy._pred_latent, atol=1e-6)
    # before the observation: the observation itself
    early_tokens, early_state = policy._surrogate(stamp - 1.0)
    np.testing.assert_allclose(early_state, expected(np.zeros_like(measured)), atol=1e-5)
    np.testing.assert_allclose(early_tokens, policy._last_obs_tokens, atol=1e-6)
    # the speculation runs on it: a different surrogate, a different paused state
    a = policy.speculate(0.5, at=at)
    b = policy.speculate(0.5)
    assert np.abs(a.x_act - b.x_act).max() > 1e-6
    chunk = policy.complete(a, _obs(policy, 1))
    assert np.all(np.isfinite(chunk.actions))
    with pytest.raises(ValueError, match="at must be"):
        policy.speculate(0.5, at=float("nan"))


def test_plan_parts_are_reported_within_the_blocking_time(ckpt) -> None:
    """Every plan reports the seconds of its encoder and context pass (the parts sai cannot
    speculate) and of its flow steps, inside its blocking time; a completion's flow is only
    the steps left after the speculation. The chunk runner turns them into <part>_ms
    statistics."""
    from wam_ros.runtime.chunk_runner import ChunkRunner
    from wam_ros.runtime.scheduler import SchedulerConfig, make_scheduler

    policy = load_policy(ckpt, memory="kv", mode="joint", flow_steps=4)
    plain = policy.infer(_obs(policy, 0))
    parts = ("encode_s", "context_s", "flow_s")
    assert all(plain.extras[p] > 0.0 for p in parts)
    assert sum(plain.extras[p] for p in parts) <= plain.blocking_time
    completed = policy.complete(policy.speculate(0.75), _obs(policy, 1))
    assert all(completed.extras[p] > 0.0 for p in parts)
    assert sum(completed.extras[p] for p in parts) <= completed.blocking_time

    runner = ChunkRunner(load_policy(ckpt), make_scheduler("sync", SchedulerConfig()))
    assert "encode_ms.p50" not in runner.stats()
    runner.on_observation(_obs(policy, 0), now=0.0)
    job = runner.poll(now=0.0)
    runner.finish(runner.execute(job), now=0.05)
    stats = runner.stats()
    assert 0.0 < stats["encode_ms.p50"] <= stats["inference_ms.p50"]
    assert 0.0 < stats["context_ms.p50"] and 0.0 < stats["flow_ms.p99"]


def test_stale_handle_and_bad_s_mid(ckpt) -> None:
    policy = load_policy(ckpt)
    policy.infer(_obs(policy, 0))
    handle = policy.speculate(0.5)
    policy.reset()
    with pytest.raises(ValueError, match="stale"):
        policy.complete(handle, _obs(policy, 1))
    with pytest.raises(ValueError, match="s_mid"):
        policy.speculate(1.5)
    with pytest.raises(RuntimeError, match="previous chunk"):
        policy.speculate(0.5)  # nothing predicted yet in this episode


def test_step_caching_reports_skipped_steps(ckpt) -> None:
    never = load_policy(ckpt, mode="fast", flow_steps=8, step_cache_threshold=2.0)
    always = load_policy(ckpt, mode="fast", flow_steps=8, step_cache_threshold=-1.0)
    a = never.infer(_obs(never, 0))
    b = always.infer(_obs(always, 0))
    assert a.extras["skipped_steps"] == 0
    # steps 0, 1 computed, then every other step reused: 2, 4, 6 skipped
    assert b.extras["skipped_steps"] == 3
    assert np.abs(a.actions - b.actions).max() > 0


def test_bad_inputs_give_clear_errors(ckpt) -> None:
    policy = load_policy(ckpt)
    obs = _obs(policy, 0)
    del obs.images["cam_high"]
    with pytest.raises(ValueError, match="cam_high"):
        policy.infer(obs)
    obs = _obs(policy, 0)
    obs.images["cam_high"] = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="expects"):
        policy.infer(obs)
    obs = _obs(policy, 0)
    obs.joint_positions = obs.joint_positions.copy()
    obs.joint_positions[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        policy.infer(obs)
    obs.joint_positions = np.zeros(5)
    with pytest.raises(ValueError, match="joint_positions"):
        policy.infer(obs)


@pytest.mark.parametrize("kw, word", [({"backend": "tflite"}, "backend"),
                                      ({"memory": "lstm"}, "memory"),
                                      ({"mode": "slow"}, "mode")])
def test_unknown_names_list_choices(ckpt, kw: dict, word: str) -> None:
    with pytest.raises(ValueError, match=f"unknown {word}.*allowed"):
        load_policy(ckpt, **kw)


def test_tensorrt_backend_clear_error_without_gpu(ckpt) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: covered by the gpu-marked test")
    with pytest.raises(BackendUnavailable, match="TensorRT|GPU"):
        load_policy(ckpt, backend="tensorrt")


def test_cuda_device_without_gpu_is_clear(ckpt) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(BackendUnavailable, match="CUDA"):
        load_policy(ckpt, backend="torch", device="cuda")
    import onnxruntime

    from wam_ros.model.export import export_onnx

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        export_onnx(ckpt, log=lambda *_: None)
        with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider"):
            load_policy(ckpt, backend="onnxruntime", device="cuda")


@pytest.mark.gpu
def test_torch_cuda_matches_cpu(ckpt) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    cpu = load_policy(ckpt, device="cpu")
    gpu = load_policy(ckpt, device="cuda")
    for i in range(3):
        np.testing.assert_allclose(gpu.infer(_obs(gpu, i)).actions,
                                   cpu.infer(_obs(cpu, i)).actions, atol=1e-3)


@pytest.mark.parametrize("memory,mode", [("kv", "joint"), ("ttt", "two_stage")])
def test_prefix_inpainting_keeps_the_executing_chunk_until_arrival(ckpt, memory, mode) -> None:
    """prefix_s: the new chunk's actions inside it are the last chunk's at the same times
    (absolute, whatever the new reference state), the rest come from the flow; SAI inpaints
    in its completion; no last chunk or prefix_s 0 inpaints nothing."""
    from dataclasses import replace

    policy = load_policy(ckpt, memory=memory, mode=mode)
    spec = policy.robot
    dt = policy.meta.dt
    first = policy.infer(_obs(policy, 0), prefix_s=0.2)  # nothing executes yet
    assert first.extras["inpainted_actions"] == 0
    absolute = spec.joint_to_action(first.reference) + first.actions  # delta space

    obs = replace(_obs(policy, 1), stamp=first.stamp + 2 * dt)
    free = load_policy(ckpt, memory=memory, mode=mode)
    free.infer(_obs(free, 0))
    plain = free.infer(obs)
    chunk = policy.infer(obs, prefix_s=2.5 * dt)  # actions 0, 1, 2 fall inside
    assert chunk.extras["inpainted_actions"] == 3
    new_abs = spec.joint_to_action(chunk.reference) + chunk.actions
    np.testing.assert_allclose(new_abs[:3], absolute[2:5], atol=1e-4)
    assert not np.allclose(chunk.actions[3:], plain.actions[3:], atol=1e-6)  # conditioned

    handle = policy.speculate(0.5)
    obs3 = replace(_obs(policy, 2), stamp=obs.stamp + dt)
    done = policy.complete(handle, obs3, prefix_s=1.2 * dt)
    assert done.extras["inpainted_actions"] == 2
    np.testing.assert_allclose(spec.joint_to_action(done.reference) + done.actions[:2],
                               new_abs[1:3], atol=1e-4)
    assert policy.infer(replace(obs3, stamp=obs3.stamp + dt)).extras["inpainted_actions"] == 0
