"""From model output to absolute, timed joint chunks in joint units.

The policy may emit latent actions, normalised joint deltas or normalised absolute joints; the
timeline only accepts absolute joint targets. `ChunkDecoder` turns any of them into one, in this
order (each step optional):

1. latent -> joint actions through an injected callable (the learned decoder lives in
   wam_ros.model.latent_decoder; core only sees `decode(latent (H, Dl), joint_state (D,))`);
2. de-normalisation: actions * std + mean (the statistics the model was trained with);
3. delta -> absolute against the chunk's reference state, for the dims in `delta_mask` (by
   default every joint but the grippers, which policies command absolutely — openpi's and
   LeRobot's convention);
4. gripper mapping: normalised opening (0 closed .. 1 open) -> joint units via RobotSpec.

Steps 2-3 happen in action space (grippers normalised), so a delta on a gripper dim is applied to
the reference's normalised opening, not to metres.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from wam_ros.core.robot import RobotSpec
from wam_ros.core.types import ActionSpace, Chunk

LatentDecodeFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
LATENT_OUTPUT_SPACES = ("absolute", "delta")


class DecodeError(ValueError):
    """A chunk cannot be decoded (missing reference, decoder, wrong shape, NaN)."""


@dataclass(frozen=True)
class Normalisation:
    """Per-dim statistics: model space = (action - mean) / std."""

    mean: np.ndarray  # (D,)
    std: np.ndarray  # (D,)

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float64)
        std = np.asarray(self.std, dtype=np.float64)
        if mean.ndim != 1 or std.shape != mean.shape:
            raise ValueError(
                f"Normalisation: mean {mean.shape} and std {std.shape}; allowed: equal (D,)"
            )
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise ValueError("Normalisation.std: allowed: finite values > 0 (mean finite)")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    def denormalise(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) * self.std + self.mean

    def normalise(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.std


@dataclass(frozen=True)
class DecoderConfig:
    """latent_output_space: what the latent decoder returns ("absolute" or "delta" joints).
    grippers_normalised: gripper entries are 0..1 openings to map to joint units.
    delta_grippers: also treat gripper dims as deltas in JOINT_DELTA chunks."""

    latent_output_space: str = "absolute"
    grippers_normalised: bool = True
    delta_grippers: bool = False

    def __post_init__(self) -> None:
        if self.latent_output_space not in LATENT_OUTPUT_SPACES:
            raise ValueError(
                f"DecoderConfig.latent_output_space: got {self.latent_output_space!r}; "
                f"allowed: {', '.join(LATENT_OUTPUT_SPACES)}"
            )


class ChunkDecoder:
    """Any policy chunk -> JOINT_ABSOLUTE chunk in joint units, action-layout order."""

    def __init__(self, spec: RobotSpec, config: DecoderConfig | None = None,
                 normalisation: Normalisation | None = None,
                 latent_decoder: LatentDecodeFn | None = None) -> None:
        self.spec = spec
        self.config = config or DecoderConfig()
        dim = spec.action_dim
        if normalisation is not None and normalisation.mean.shape != (dim,):
            raise ValueError(
                f"normalisation: {normalisation.mean.shape[0]} dims; allowed: {dim} "
                f"({spec.name} action layout)"
            )
        self.normalisation = normalisation
        self.latent_decoder = latent_decoder
        grippers = spec.gripper_mask()
        self.delta_mask = np.ones(dim, bool) if self.config.delta_grippers else ~grippers

    def decode(self, chunk: Chunk, joint_state: np.ndarray | None = None) -> Chunk:
        """joint_state: (D,) joint units; used by the latent decoder and, when the chunk has
        none, as the delta reference."""
        dim = self.spec.action_dim
        reference = chunk.reference if chunk.reference is not None else joint_state
        if reference is not None:
            reference = np.asarray(reference, dtype=np.float64)
            if reference.shape != (dim,) or not np.all(np.isfinite(reference)):
                raise DecodeError(
                    f"chunk {chunk.chunk_id}: reference must be finite ({dim},), got "
                    f"{reference.shape}"
                )
        actions = np.asarray(chunk.actions, dtype=np.float64)  # (H, D) or (H, Dl)
        space = chunk.space
        if space == ActionSpace.LATENT:
            if self.latent_decoder is None:
                raise DecodeError(
                    f"chunk {chunk.chunk_id}: latent actions but no latent decoder configured"
                )
            if reference is None:
                raise DecodeError(
                    f"chunk {chunk.chunk_id}: latent decoding needs the joint state"
                )
            actions = np.asarray(self.latent_decoder(actions, reference), dtype=np.float64)
            if actions.shape != (chunk.horizon, dim):
                raise DecodeError(
                    f"latent decoder returned {actions.shape}; expected ({chunk.horizon}, {dim})"
                )
            space = (ActionSpace.JOINT_DELTA if self.config.latent_output_space == "delta"
                     else ActionSpace.JOINT_ABSOLUTE)
        if actions.shape[1] != dim:
            raise DecodeError(
                f"chunk {chunk.chunk_id}: {actions.shape[1]} dims; allowed: {dim} "
                f"({self.spec.name})"
            )
        if self.normalisation is not None:
            actions = self.normalisation.denormalise(actions)
        if space == ActionSpace.JOINT_DELTA:
            if reference is None:
                raise DecodeError(
                    f"chunk {chunk.chunk_id}: delta actions need a reference state"
                )
            # In action space, so gripper references are openings (0..1) like the actions.
            ref_action = (self.spec.joint_to_action(reference) if self.config.grippers_normalised
                          else reference)
            actions = np.where(self.delta_mask, actions + ref_action, actions)
        if self.config.grippers_normalised:
            actions = self.spec.action_to_joint(actions)
        if not np.all(np.isfinite(actions)):
            raise DecodeError(f"chunk {chunk.chunk_id}: decoding produced NaN or inf")
        return replace(
            chunk, actions=actions.astype(np.float32), space=ActionSpace.JOINT_ABSOLUTE,
            names=tuple(self.spec.action_layout), reference=reference,
        )


__all__ = [
    "LATENT_OUTPUT_SPACES", "ChunkDecoder", "DecodeError", "DecoderConfig", "LatentDecodeFn",
    "Normalisation",
]
