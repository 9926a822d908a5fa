"""ChunkDecoder: latent hook, de-normalisation, delta -> absolute, gripper mapping per robot."""

from __future__ import annotations

import numpy as np
import pytest

from wam_ros.core.decoding import ChunkDecoder, DecodeError, DecoderConfig, Normalisation
from wam_ros.core.robot import RobotSpec
from wam_ros.core.timeline import ActionTimeline
from wam_ros.core.types import ActionSpace, Chunk

ROBOTS = ("cobot_magic", "agibot_g1")


@pytest.fixture(scope="module", params=ROBOTS)
def spec(request: pytest.FixtureRequest) -> RobotSpec:
    return RobotSpec.load(request.param)


def make_chunk(actions: np.ndarray, space: ActionSpace, reference: np.ndarray | None = None,
               ) -> Chunk:
    return Chunk(stamp=2.0, actions=np.asarray(actions, np.float32), dt=1 / 30, space=space,
                 chunk_id=4, episode_id=1, reference=reference, extras={"flow_steps": 4.0})


def test_absolute_maps_grippers_to_joint_units(spec: RobotSpec) -> None:
    dim, grip = spec.action_dim, spec.gripper_mask()
    acts = np.tile(spec.joint_to_action(spec.home_vector()), (5, 1))
    acts[:, grip] = np.linspace(0.0, 1.0, 5)[:, None]  # closed .. open
    out = ChunkDecoder(spec).decode(make_chunk(acts, ActionSpace.JOINT_ABSOLUTE))
    assert out.space is ActionSpace.JOINT_ABSOLUTE and out.actions.shape == (5, dim)
    assert out.names == spec.action_layout and out.actions.dtype == np.float32
    np.testing.assert_allclose(out.actions[:, ~grip], acts[:, ~grip], atol=1e-6)
    for i in np.flatnonzero(grip):
        g = spec.grippers[spec.action_layout[i]]
        np.testing.assert_allclose(out.actions[0, i], g.closed, atol=1e-6)
        np.testing.assert_allclose(out.actions[-1, i], g.open, atol=1e-6)
    # metadata carried over
    assert (out.stamp, out.chunk_id, out.episode_id, out.dt) == (2.0, 4, 1, 1 / 30)
    assert out.extras == {"flow_steps": 4.0}


def test_gripper_mapping_differs_per_robot() -> None:
    """Cobot Magic opens to 0.038 m; AgiBot G1's gripper joint is 0 when open, 1 closed."""
    for name, open_value in (("cobot_magic", 0.038), ("agibot_g1", 0.0)):
        spec = RobotSpec.load(name)
        acts = np.zeros((1, spec.action_dim))
        acts[:, spec.gripper_mask()] = 1.0  # fully open
        out = ChunkDecoder(spec).decode(make_chunk(acts, ActionSpace.JOINT_ABSOLUTE))
        np.testing.assert_allclose(out.actions[0, spec.gripper_mask()], open_value, atol=1e-6)


def test_denormalisation_then_delta_against_reference(spec: RobotSpec) -> None:
    dim, grip = spec.action_dim, spec.gripper_mask()
    rng = np.random.default_rng(5)
    mean = rng.normal(scale=0.01, size=dim)
    std = rng.uniform(0.05, 0.2, size=dim)
    mean[grip], std[grip] = 0.5, 0.5  # grippers: normalised openings around half open
    norm = Normalisation(mean, std)
    reference = spec.home_vector()
    true_delta = rng.normal(scale=0.1, size=(6, dim))
    true_delta[:, grip] = 0.25  # absolute opening for grippers
    model_out = norm.normalise(true_delta)
    out = ChunkDecoder(spec, normalisation=norm).decode(
        make_chunk(model_out, ActionSpace.JOINT_DELTA, reference=reference))
    np.testing.assert_allclose(out.actions[:, ~grip], (reference + true_delta)[:, ~grip],
                               atol=1e-5)
    expected_grip = spec.action_to_joint(np.where(grip, 0.25, 0.0))[grip]
    np.testing.assert_allclose(out.actions[:, grip], np.tile(expected_grip, (6, 1)), atol=1e-6)
    np.testing.assert_allclose(out.reference, reference)


def test_delta_grippers_option_adds_to_normalised_reference() -> None:
    spec = RobotSpec.load("cobot_magic")
    grip = spec.gripper_mask()
    reference = spec.home_vector()  # grippers fully open (0.038 m -> 1.0 normalised)
    deltas = np.zeros((1, spec.action_dim))
    deltas[:, grip] = -0.5
    out = ChunkDecoder(spec, DecoderConfig(delta_grippers=True)).decode(
        make_chunk(deltas, ActionSpace.JOINT_DELTA, reference=reference))
    np.testing.assert_allclose(out.actions[0, grip], 0.019, atol=1e-6)  # half open, metres


def test_delta_uses_joint_state_when_chunk_has_no_reference(spec: RobotSpec) -> None:
    deltas = np.full((3, spec.action_dim), 0.01)
    deltas[:, spec.gripper_mask()] = 1.0
    state = spec.home_vector()
    dec = ChunkDecoder(spec)
    out = dec.decode(make_chunk(deltas, ActionSpace.JOINT_DELTA), joint_state=state)
    arm = ~spec.gripper_mask()
    np.testing.assert_allclose(out.actions[:, arm], (state + 0.01)[arm].reshape(1, -1)
                               .repeat(3, 0), atol=1e-6)
    with pytest.raises(DecodeError, match="delta actions need a reference"):
        dec.decode(make_chunk(deltas, ActionSpace.JOINT_DELTA))


def test_latent_hook_receives_latent_and_state(spec: RobotSpec) -> None:
    dim = spec.action_dim
    latent = np.arange(4 * 8, dtype=np.float32).reshape(4, 8)
    seen: dict[str, np.ndarray] = {}
    weights = np.random.default_rng(0).normal(scale=1e-3, size=(8, dim))

    def decode(z: np.ndarray, joint_state: np.ndarray) -> np.ndarray:
        seen["z"], seen["state"] = z, joint_state
        return z @ weights  # (H, D) deltas

    state = spec.home_vector()
    dec = ChunkDecoder(spec, DecoderConfig(latent_output_space="delta"), latent_decoder=decode)
    out = dec.decode(make_chunk(latent, ActionSpace.LATENT), joint_state=state)
    np.testing.assert_array_equal(seen["z"], latent)
    np.testing.assert_array_equal(seen["state"], state)
    arm = ~spec.gripper_mask()
    np.testing.assert_allclose(out.actions[:, arm], (state + latent @ weights)[:, arm],
                               atol=1e-5)
    assert out.space is ActionSpace.JOINT_ABSOLUTE and out.names == spec.action_layout


def test_latent_errors(spec: RobotSpec) -> None:
    latent = make_chunk(np.zeros((4, 8)), ActionSpace.LATENT)
    state = spec.home_vector()
    with pytest.raises(DecodeError, match="no latent decoder"):
        ChunkDecoder(spec).decode(latent, state)
    bad = ChunkDecoder(spec, latent_decoder=lambda z, s: np.zeros((4, 3)))
    with pytest.raises(DecodeError, match=rf"expected \(4, {spec.action_dim}\)"):
        bad.decode(latent, state)
    nan = ChunkDecoder(spec, latent_decoder=lambda z, s: np.full((4, len(s)), np.nan))
    with pytest.raises(DecodeError, match="NaN"):
        nan.decode(latent, state)
    ok = ChunkDecoder(spec, latent_decoder=lambda z, s: np.tile(s, (4, 1)))
    with pytest.raises(DecodeError, match="needs the joint state"):
        ok.decode(latent)


def test_config_and_shape_errors(spec: RobotSpec) -> None:
    with pytest.raises(ValueError, match="latent_output_space: got 'joint'; allowed: absolute"):
        DecoderConfig(latent_output_space="joint")
    with pytest.raises(ValueError, match=r"Normalisation\.std"):
        Normalisation(np.zeros(3), np.array([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="allowed: equal"):
        Normalisation(np.zeros(3), np.ones(4))
    with pytest.raises(ValueError, match=f"allowed: {spec.action_dim}"):
        ChunkDecoder(spec, normalisation=Normalisation(np.zeros(3), np.ones(3)))
    with pytest.raises(DecodeError, match="dims"):
        ChunkDecoder(spec).decode(make_chunk(np.zeros((2, 3)), ActionSpace.JOINT_ABSOLUTE))
    with pytest.raises(DecodeError, match="reference must be finite"):
        ChunkDecoder(spec).decode(make_chunk(np.zeros((2, spec.action_dim)),
                                             ActionSpace.JOINT_DELTA, reference=np.zeros(2)))


def test_decoded_chunk_is_accepted_by_the_timeline(spec: RobotSpec) -> None:
    deltas = np.zeros((10, spec.action_dim))
    out = ChunkDecoder(spec).decode(make_chunk(deltas, ActionSpace.JOINT_DELTA,
                                               reference=spec.home_vector()))
    tl = ActionTimeline(spec.action_dim)
    assert tl.splice(out, now=2.0).accepted
    np.testing.assert_allclose(tl.sample(2.1), spec.action_to_joint(
        np.where(spec.gripper_mask(), 0.0, spec.home_vector())), atol=1e-6)
