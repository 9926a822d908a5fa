"""SAI (CLWM) speculation, a part of the policy runner (runtime/policy.py): `speculate`
integrates the first steps of the next chunk's ODE against a surrogate context standing for
the instant the real observation is expected; `complete` swaps the real observation in and
integrates the rest. With s_mid = 0 the result equals `Policy.infer`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wam_ros.core.types import Chunk, Observation
from wam_ros.runtime.step_cache import StepCache


@dataclass
class SpeculativeHandle:
    """State of a flow integration paused at s_mid (returned by `Policy.speculate`)."""

    episode: int
    chunk_index: int
    steps_done: int
    x_lat: np.ndarray | None
    x_act: np.ndarray
    skipped: int
    elapsed: float
    extras: dict[str, Any] = field(default_factory=dict)
    noise_act: np.ndarray | None = None  # the actions' starting noise (prefix inpainting)


class Speculation:
    """The speculative half of `Policy` (a mixin: it uses the policy's context, integration
    and memory methods)."""

    def speculate(self, s_mid: float = 0.5, at: float | None = None) -> SpeculativeHandle:
        """Pre-integrate the next chunk from s=0 to s_mid on the surrogate context.

        at: when the real observation is expected (the stamp `complete` will get); the
        surrogate context stands for that instant (`_surrogate`). None: one chunk after the
        last observation, the time the predicted latent stands for; an observation taken
        while the plan still runs (async, sai) comes earlier.
        """
        if not 0.0 <= s_mid <= 1.0:
            raise ValueError(f"s_mid must be within [0, 1], got {s_mid}")
        if at is not None and not np.isfinite(at):
            raise ValueError(f"speculate: at must be a finite stamp or None, got {at!r}")
        t0 = time.perf_counter()
        x_lat, x_act = self._noise()
        noise_act = x_act.copy()
        n_spec = round(s_mid * self.flow_steps)
        cache = StepCache(self.step_cache_threshold)
        if n_spec > 0:
            if self._last_obs_tokens is None:
                raise RuntimeError("speculate() needs a previous chunk in this episode; call "
                                   "infer() first (or speculate with s_mid=0)")
            surrogate, state = self._surrogate(at)
            prefix = self._context(surrogate, state, self._task(self._last_task),
                                   commit=False)
            x_lat, x_act = self._integrate(prefix, x_lat, x_act, 0, n_spec, cache)
        return SpeculativeHandle(self.episode_id, self.chunk_index, n_spec, x_lat, x_act,
                                 cache.skipped, time.perf_counter() - t0,
                                 {"s_mid": float(s_mid)}, noise_act)

    def complete(self, handle: SpeculativeHandle, obs: Observation,
                 prefix_s: float = 0.0) -> Chunk:
        """Swap in the real observation (long-term memory updated) and integrate s_mid -> 1;
        prefix_s as in `infer` (the inpainting starts at s_mid)."""
        if handle.episode != self.episode_id or handle.chunk_index != self.chunk_index:
            raise ValueError("stale speculative handle: the policy was reset or advanced since "
                             "speculate()")
        t0 = time.perf_counter()
        obs_tok, state_act, prefix, parts = self._observe(obs)
        t_flow = time.perf_counter()
        noise = handle.noise_act if handle.noise_act is not None else handle.x_act
        known = self._inpaint_target(obs.stamp, state_act, prefix_s, noise)
        cache = StepCache(self.step_cache_threshold)  # history from the surrogate is stale
        x_lat, x_act = self._integrate(prefix, handle.x_lat, handle.x_act, handle.steps_done,
                                       None, cache, known)
        parts["flow_s"] = time.perf_counter() - t_flow  # the steps left after the speculation
        chunk = self._finish(obs, obs_tok, state_act, x_lat, x_act,
                             handle.skipped + cache.skipped, prefix["committed"], known)
        chunk.blocking_time = time.perf_counter() - t0
        chunk.inference_time = chunk.blocking_time + handle.elapsed
        chunk.extras.update(parts)
        chunk.extras["speculative_steps"] = float(handle.steps_done)
        chunk.extras["s_mid"] = handle.extras["s_mid"]
        return chunk

    def _surrogate(self, at: float | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Observation tokens and state (action convention) standing in for the observation
        expected at `at` (None: one chunk after the last observation, the predicted latent's
        time; see `speculate`).

        The state is the last measured state with the arms moved by what the last plan
        commands between the two instants, not the commanded position itself: the measured
        state trails the command (tracking lag), and a gripper closed on an object stays open
        by the object's width however hard it is commanded shut. Grippers keep their last
        measured opening: moved by the plan too, a release commanded from a blocked grip
        reads as already open (on AgiBot G1 at s_mid 0.75 the arm then turned back while
        dropping the cube beside the bin). On the shipped CobotMagic checkpoint and held-out
        expert frames 10 actions apart, the commanded gripper was 0.81 from the measured one,
        the last measured 0.025; a chunk planned entirely from the surrogate came 0.017 from
        the chunk planned from the real observation, against 0.053 with the commanded state
        at the plan's end (mean absolute difference; another noise seed: 0.001).
        """
        obs_tok, pred = self._last_obs_tokens, self._pred_latent
        chunk_s = self.cfg.horizon * self.cfg.dt
        if self._last_stamp is None:  # nothing planned yet (speculate refuses)
            return (pred if pred is not None else obs_tok), None
        at = self._last_stamp + chunk_s if at is None else at
        frac = float(np.clip((at - self._last_stamp) / chunk_s, 0.0, 1.0))
        tokens = obs_tok if pred is None else \
            ((1.0 - frac) * obs_tok + frac * pred).astype(np.float32)
        state = self._last_state
        if self._plan is not None and state is not None:
            plan_stamp, plan = self._plan
            t = np.clip((at - plan_stamp) / self.cfg.dt, 0.0, len(plan) - 1.0)
            moved = self._plan_at(plan, t) - plan[0]  # the plan starts at the observation
            state = np.where(self._gripper_mask, state, state + moved)
        return tokens, (None if state is None else state.astype(np.float32))

    @staticmethod
    def _plan_at(plan: np.ndarray, t: float | np.ndarray) -> np.ndarray:
        """The plan (H, A) at fractional step(s) t in [0, H - 1], linearly interpolated:
        (A,) for a scalar t, (n, A) for n steps."""
        t = np.asarray(t, np.float64)
        i = np.minimum(np.floor(t).astype(int), len(plan) - 2)
        f = (t - i)[..., None]
        return (1.0 - f) * plan[i] + f * plan[i + 1]
