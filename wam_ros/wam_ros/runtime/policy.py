"""The policy runner: Observation -> Chunk, with memory, flow integration and SAI.

    policy = load_policy(ckpt, backend="onnxruntime", memory="ttt", mode="fast", flow_steps=4)
    chunk = policy.infer(obs)                 # one chunk; memory updated with the real obs
    handle = policy.speculate(s_mid=0.5)      # while the previous chunk still executes
    chunk = policy.complete(handle, obs)      # real obs arrived: swap context, finish the ODE
    policy.reset()                            # new episode

Units: chunk actions use the robot's action layout with grippers normalised 0..1 (joints in
rad / m). `chunk.reference` is the joint state at the observation in joint units (as
ActionChunk.reference documents). `absolute`: target positions. `delta` (space JOINT_DELTA):
offsets to robot.joint_to_action(chunk.reference), i.e. to the state with grippers normalised.
`latent` (space LATENT): (H, latent_action_dim) latent actions for
`LatentActionDecoder.decode(latent, chunk.reference)`.

Flow integration: Euler steps from s=0 (noise) to s=1 on a uniform grid. Modes:
  joint      latent and actions denoised together; actions attend to the current noisy latent
  fast       (Fast-WAM) no latent tokens: context keys/values computed once, reused by each step
  two_stage  (CLWM) latent ODE first; then the TTT working copy absorbs the predicted latent
             and the action ODE runs attending to the clean latent's keys/values
DiT step caching: when the cosine similarity of the last two computed velocities exceeds the
threshold, the next step reuses the last velocity instead of running the model (counted in
chunk.extras["skipped_steps"]).
A Policy is not thread-safe: call infer / speculate / complete / reset from one worker thread.

SAI (CLWM): `speculate` integrates the first round(s_mid * steps) steps of the first ODE against
a surrogate context standing for the instant the real observation is expected (one chunk after
the last one unless told): tokens interpolated from the last observation's to the predicted
latent, the arms at their last measured position moved as the last plan commands, the grippers
as last measured;
`complete` encodes the real observation, updates long-term memory with it, replaces the
surrogate context and integrates the remaining steps. With s_mid = 0 the result equals `infer`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from wam_ros.core.robot import RobotSpec
from wam_ros.core.types import ActionSpace, Chunk, Observation
from wam_ros.model.config import MEMORIES, MODES, ModelConfig
from wam_ros.runtime.memory import KVCache, TTTState
from wam_ros.runtime.speculation import Speculation
from wam_ros.runtime.step_cache import StepCache


@dataclass(frozen=True)
class PolicyMeta:
    robot: str
    camera_names: tuple[str, ...]
    image_size: tuple[int, int]  # (H, W) the policy expects
    action_space: ActionSpace
    action_names: tuple[str, ...]  # robot action layout (joint names)
    horizon: int
    dt: float
    action_dim: int  # robot action dimension D
    latent_action_dim: int  # per-step size of a LATENT chunk (0 unless latent space)
    memory: str
    mode: str
    flow_steps: int
    backend: str
    checkpoint: str = ""


COMMIT_FRACTION = 0.9  # an observation joins memory this far into a memory stride


class Policy(Speculation):
    def __init__(self, backend: Any, cfg: ModelConfig, stats: dict[str, np.ndarray],
                 memory: str = "kv", mode: str = "joint", flow_steps: int | None = None,
                 step_cache_threshold: float | None = None, seed: int = 0,
                 checkpoint: str = "", memory_stride: float | None = None,
                 noise_scale: float | None = None) -> None:
        if memory not in MEMORIES:
            raise ValueError(f"unknown memory {memory!r}; allowed: {', '.join(MEMORIES)}")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")
        steps = cfg.flow_steps if flow_steps is None else int(flow_steps)
        if steps < 1:
            raise ValueError(f"flow_steps must be >= 1, got {flow_steps}")
        self.backend, self.cfg = backend, cfg
        self.memory_kind, self.mode, self.flow_steps = memory, mode, steps
        self.step_cache_threshold = (cfg.step_cache_threshold if step_cache_threshold is None
                                     else float(step_cache_threshold))
        self.seed = seed
        # Reduced-temperature sampling: the flow starts from noise_scale * N(0, I). Below 1 the
        # samples move toward the modes of the action distribution; with few Euler steps that
        # removes most of the chunk-to-chunk jitter a robot's acceleration limits cannot follow.
        self.noise_scale = cfg.noise_scale if noise_scale is None else float(noise_scale)
        if not (np.isfinite(self.noise_scale) and 0.0 <= self.noise_scale <= 2.0):
            raise ValueError(f"noise_scale: got {noise_scale!r}; allowed: 0 .. 2")
        # Memory holds observations one chunk apart, as in training (windows of consecutive
        # chunks, `horizon` actions apart). A policy asked for chunks more often (async,
        # execute < horizon) still plans from every new observation, but only commits one to
        # memory once `memory_stride` seconds have passed since the last committed one (within
        # COMMIT_FRACTION): attention and TTT then see the history spacing they were trained
        # on. 0: commit every observation.
        self.memory_stride = (cfg.horizon * cfg.dt if memory_stride is None
                              else float(memory_stride))
        if not np.isfinite(self.memory_stride) or self.memory_stride < 0:
            raise ValueError(f"memory_stride: got {memory_stride!r}; allowed: seconds >= 0")
        self.robot = RobotSpec.load(cfg.robot)
        self._gripper_mask = self.robot.gripper_mask()
        if tuple(self.robot.action_layout) != tuple(cfg.action_layout):
            raise ValueError(f"checkpoint action layout {cfg.action_layout} does not match "
                             f"robot {cfg.robot!r} layout {self.robot.action_layout}")
        self.stats = {k: np.asarray(v, np.float32) for k, v in stats.items()}
        space = {"absolute": ActionSpace.JOINT_ABSOLUTE, "delta": ActionSpace.JOINT_DELTA,
                 "latent": ActionSpace.LATENT}[cfg.action_space]
        self.meta = PolicyMeta(
            robot=cfg.robot, camera_names=tuple(cfg.camera_names),
            image_size=tuple(cfg.image_size), action_space=space,
            action_names=tuple(cfg.action_layout), horizon=cfg.horizon, dt=cfg.dt,
            action_dim=cfg.action_dim,
            latent_action_dim=cfg.latent_action_dim if cfg.action_space == "latent" else 0,
            memory=memory, mode=mode, flow_steps=steps, backend=getattr(backend, "name", "?"),
            checkpoint=checkpoint)
        hd = cfg.d_model // cfg.n_heads
        self.kv = KVCache(cfg.n_layers, cfg.n_heads, cfg.n_ctx_tokens, hd,
                          cfg.memory_window - 1)
        self.ttt = TTTState(backend.ttt_initial())
        self._task_cache: dict[str, np.ndarray] = {}
        self.episode_id = 0
        self.reset()

    # ---- public API ------------------------------------------------------------------------
    def reset(self) -> None:
        """Episode start: clears memory (KV cache, TTT long-term weights) and counters."""
        self.kv.clear()
        self.ttt.clear()
        self.episode_id += 1
        self.chunk_index = 0
        self.memory_pos = 0  # chunk position of the next committed context (RoPE index)
        self._last_commit: float | None = None  # stamp of the last committed observation
        self._last_obs_tokens: np.ndarray | None = None
        self._pred_latent: np.ndarray | None = None
        self._last_stamp: float | None = None  # stamp of the last planned observation
        self._last_state: np.ndarray | None = None  # its measured state (action convention)
        self._prev_actions: np.ndarray | None = None  # last chunk's normalised model actions
        # the last chunk as absolute actions (action convention): (stamp, (H, A))
        self._plan: tuple[float, np.ndarray] | None = None
        self._last_task = ""

    @property
    def memory_state_bytes(self) -> int:
        return self.kv.state_bytes if self.memory_kind == "kv" else self.ttt.state_bytes

    def infer(self, obs: Observation, prefix_s: float = 0.0) -> Chunk:
        """The chunk planned from `obs`. prefix_s > 0: the robot will still execute the last
        chunk for that long after obs.stamp (the inference's latency, async): the new chunk's
        actions in that span are inpainted with the last chunk's, and the flow generates the
        rest consistent with them (real-time chunking's frozen prefix)."""
        t0 = time.perf_counter()
        obs_tok, state_act, prefix, parts = self._observe(obs)
        t_flow = time.perf_counter()
        x_lat, x_act = self._noise()
        known = self._inpaint_target(obs.stamp, state_act, prefix_s, x_act)
        cache = StepCache(self.step_cache_threshold)
        x_lat, x_act = self._integrate(prefix, x_lat, x_act, 0, None, cache, known)
        parts["flow_s"] = time.perf_counter() - t_flow
        chunk = self._finish(obs, obs_tok, state_act, x_lat, x_act, cache.skipped,
                             prefix["committed"], known)
        chunk.inference_time = chunk.blocking_time = time.perf_counter() - t0
        chunk.extras.update(parts)
        return chunk

    # ---- internals ----------------------------------------------------------------------

    def _observe(self, obs: Observation,
                 ) -> tuple[np.ndarray, np.ndarray, dict[str, Any], dict[str, float]]:
        """The part of every plan that needs the real observation, whatever the scheduler
        (sai cannot speculate it): its tokens, its state (action convention) and its context
        (long-term memory updated), with the seconds of the encoder and of the context pass."""
        images, state_act, task = self._prepare(obs)
        t0 = time.perf_counter()
        obs_tok = self.backend.encode(images)
        t1 = time.perf_counter()
        prefix = self._real_context(obs_tok, state_act, task, obs.stamp)
        parts = {"encode_s": t1 - t0, "context_s": time.perf_counter() - t1}
        return obs_tok, state_act, prefix, parts

    def _task(self, task: str) -> np.ndarray:
        if task not in self._task_cache:
            self._task_cache[task] = np.asarray(self.backend.task_vector(task), np.float32)
        return self._task_cache[task]

    def _prepare(self, obs: Observation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h, w = self.cfg.image_size
        imgs = []
        for name in self.cfg.camera_names:
            img = obs.images.get(name)
            if img is None:
                raise ValueError(f"observation lacks camera {name!r}; the policy needs "
                                 f"{', '.join(self.cfg.camera_names)}")
            if img.shape != (h, w, 3):
                raise ValueError(f"camera {name!r}: image {img.shape}, the policy expects "
                                 f"({h}, {w}, 3) (resize in the observation node)")
            imgs.append(img.transpose(2, 0, 1))
        joints = np.asarray(obs.joint_positions, np.float64)
        if joints.shape != (self.cfg.action_dim,):
            raise ValueError(f"joint_positions {joints.shape}; expected ({self.cfg.action_dim},)"
                             f" in the layout {', '.join(self.cfg.action_layout)}")
        if not np.all(np.isfinite(joints)):
            raise ValueError("joint_positions contain NaN or inf")
        state_act = self.robot.joint_to_action(joints).astype(np.float32)
        images = np.stack(imgs)[None].astype(np.float32)  # (1, ncam, 3, H, W)
        self._last_task = obs.task
        return images, state_act, self._task(obs.task)

    def _norm_state(self, state_act: np.ndarray) -> np.ndarray:
        return ((state_act - self.stats["state_mean"]) / self.stats["state_std"])[None]

    def _context(self, obs_tok: np.ndarray, state_act: np.ndarray | None, task: np.ndarray,
                 commit: bool) -> dict[str, Any]:
        """Context keys/values of the current chunk; with commit, memory absorbs it."""
        if state_act is None:
            state_act = np.asarray(self.stats["state_mean"], np.float32)
        pos = np.array([float(self.memory_pos)], np.float32)
        state = self._norm_state(state_act).astype(np.float32)
        if self.memory_kind == "kv":
            past_k, past_v, past_bias = self.kv.padded()
            k, v = self.backend.context_kv(obs_tok, state, task, pos, past_k, past_v, past_bias)
            prefix_k = np.concatenate([past_k, k], axis=3)
            prefix_v = np.concatenate([past_v, v], axis=3)
            bias = np.concatenate([past_bias, np.zeros((1, k.shape[3]), np.float32)], axis=1)
            return {"k": prefix_k, "v": prefix_v, "bias": bias, "pos": pos, "w": None,
                    "commit": (k, v) if commit else None}
        # long-term memory absorbs the real history: this context and the chunk executed
        # before it (the previous output, what was sent to the robot)
        if self._prev_actions is None:
            prev = np.zeros((1, self.cfg.horizon, self.cfg.model_action_dim), np.float32)
            has_prev = np.zeros(1, np.float32)
        else:
            prev, has_prev = self._prev_actions, np.ones(1, np.float32)
        k, v, w_new = self.backend.context_ttt(obs_tok, state, task, pos, prev, has_prev,
                                               self.ttt.weights)
        bias = np.zeros((1, k.shape[3]), np.float32)
        # long-term memory keeps w_new only for real observations; speculative ones are a
        # working copy that is dropped with the handle
        return {"k": k, "v": v, "bias": bias, "pos": pos, "w": tuple(w_new),
                "commit": tuple(w_new) if commit else None}

    def _commit_due(self, stamp: float) -> bool:
        if self._last_commit is None or self.memory_stride <= 0:
            return True
        gap = float(stamp) - self._last_commit
        return gap < 0 or gap >= COMMIT_FRACTION * self.memory_stride  # < 0: clock restarted

    def _real_context(self, obs_tok: np.ndarray, state_act: np.ndarray, task: np.ndarray,
                      stamp: float) -> dict[str, Any]:
        commit = self._commit_due(stamp)
        prefix = self._context(obs_tok, state_act, task, commit=commit)
        if commit:
            if self.memory_kind == "kv":
                self.kv.append(*prefix["commit"])
            else:
                self.ttt.set(prefix["commit"])
            self.memory_pos += 1
            self._last_commit = float(stamp)
        prefix["committed"] = commit
        return prefix

    def _noise(self) -> tuple[np.ndarray | None, np.ndarray]:
        rng = np.random.default_rng((self.seed, self.episode_id, self.chunk_index))
        cfg = self.cfg
        feat_dim = int(self.stats["feat_mean"].shape[0])
        scale = np.float32(self.noise_scale)
        x_lat = scale * rng.standard_normal((1, cfg.n_obs_tokens, feat_dim), dtype=np.float32)
        x_act = scale * rng.standard_normal((1, cfg.horizon, cfg.model_action_dim),
                                            dtype=np.float32)
        return (None if self.mode == "fast" else x_lat), x_act

    def _phases(self) -> list[str]:
        return {"joint": ["joint"], "fast": ["action"],
                "two_stage": ["latent", "action"]}[self.mode]

    def _integrate(self, prefix: dict[str, Any], x_lat: np.ndarray | None, x_act: np.ndarray,
                   start: int, stop: int | None, cache: StepCache,
                   known: tuple[np.ndarray, np.ndarray] | None = None,
                   ) -> tuple[np.ndarray | None, np.ndarray]:
        """Euler steps [start, stop) over the concatenated phases' step sequence.

        known = (target (1, d, A), noise (1, d, A)): the first d actions are inpainted: before
        each action step they are put on the straight path from their noise to the target,
        (1 - s) noise + s target, and they end exactly on the target."""
        n = self.flow_steps
        phases = self._phases()
        total = n * len(phases)
        stop = total if stop is None else stop
        be, pos, w = self.backend, prefix["pos"], prefix["w"]
        act_prefix = None
        for step in range(start, stop):
            phase = phases[step // n]
            i = step % n
            if i == 0:
                cache.reset()
            s = np.array([i / n], np.float32)
            if phase == "action" and act_prefix is None:
                act_prefix, w_act = self._action_prefix(prefix, x_lat)
            if known is not None and phase != "latent":
                d = known[0].shape[1]
                x_act = x_act.copy()
                x_act[:, :d] = (1.0 - s[0]) * known[1] + s[0] * known[0]
            reused = cache.reuse()
            if phase == "latent":
                if reused is None:
                    reused, _, _ = be.step_latent(x_lat, s, pos, prefix["k"], prefix["v"],
                                                  prefix["bias"], w)
                    cache.record(reused)
                x_lat = x_lat + reused / n
            elif phase == "action":
                if reused is None:
                    reused = be.step_action(x_act, s, pos, act_prefix["k"], act_prefix["v"],
                                            act_prefix["bias"], w_act)
                    cache.record(reused)
                x_act = x_act + reused / n
            else:  # joint: latent and actions at the same s, actions attend to the latent
                if reused is None:
                    v_lat, lk, lv = be.step_latent(x_lat, s, pos, prefix["k"], prefix["v"],
                                                   prefix["bias"], w)
                    jp = self._extend(prefix, lk, lv)
                    v_act = be.step_action(x_act, s, pos, jp["k"], jp["v"], jp["bias"], w)
                    reused = np.concatenate([v_lat.ravel(), v_act.ravel()])
                    cache.record(reused)
                nl = x_lat.size
                x_lat = x_lat + reused[:nl].reshape(x_lat.shape) / n
                x_act = x_act + reused[nl:].reshape(x_act.shape) / n
        if known is not None and stop == total:
            x_act = x_act.copy()
            x_act[:, :known[0].shape[1]] = known[0]
        return x_lat, x_act

    def _inpaint_target(self, stamp: float, state_act: np.ndarray, prefix_s: float,
                        noise: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The last chunk's actions at stamp + k dt for the new chunk's actions k inside
        prefix_s, in the model's normalised action space, with their starting noise; None when
        there is nothing to inpaint (no prefix, no last chunk covering stamp, latent space)."""
        if prefix_s <= 0.0 or self._plan is None:
            return None
        plan_stamp, plan = self._plan
        dt = self.cfg.dt
        d = min(int(np.ceil(prefix_s / dt - 1e-9)), self.cfg.horizon - 1)
        t = (stamp - plan_stamp) / dt + np.arange(d)  # in the last chunk's steps
        d = int(np.sum((t >= 0.0) & (t <= len(plan) - 1)))  # covered, from the start
        if d <= 0 or t[0] < 0.0:
            return None
        absolute = self._plan_at(plan, t[:d])
        if self.meta.action_space == ActionSpace.JOINT_DELTA:
            absolute = absolute - state_act
        target = (absolute - self.stats["action_mean"]) / self.stats["action_std"]
        return target[None].astype(np.float32), noise[:, :d]

    @staticmethod
    def _extend(prefix: dict[str, Any], k: np.ndarray, v: np.ndarray) -> dict[str, Any]:
        return {"k": np.concatenate([prefix["k"], k], axis=3),
                "v": np.concatenate([prefix["v"], v], axis=3),
                "bias": np.concatenate([prefix["bias"], np.zeros((1, k.shape[3]), np.float32)],
                                       axis=1)}

    def _action_prefix(self, prefix: dict[str, Any], x_lat: np.ndarray | None,
                       ) -> tuple[dict[str, Any], Any]:
        """Prefix and fast weights for the action ODE of fast / two_stage."""
        if self.mode == "fast" or x_lat is None:
            return prefix, prefix["w"]
        one = np.ones(1, np.float32)
        # keys/values of the finished (clean) latent, computed once for all action steps
        _, lk, lv = self.backend.step_latent(x_lat, one, prefix["pos"], prefix["k"],
                                             prefix["v"], prefix["bias"], prefix["w"])
        w = prefix["w"]
        if w is not None:  # TTT working copy absorbs the predicted latent (CLWM stage 2)
            w = tuple(self.backend.absorb_latent(w, x_lat))
        return self._extend(prefix, lk, lv), w

    def _finish(self, obs: Observation, obs_tok: np.ndarray, state_act: np.ndarray,
                x_lat: np.ndarray | None, x_act: np.ndarray, skipped: int,
                committed: bool, known: tuple[np.ndarray, np.ndarray] | None = None) -> Chunk:
        out = x_act[0] * self.stats["action_std"] + self.stats["action_mean"]  # (H, A)
        if not np.all(np.isfinite(out)):
            raise FloatingPointError("model produced non-finite actions")
        space = self.meta.action_space
        names = tuple(self.cfg.action_layout) if space != ActionSpace.LATENT else ()
        chunk = Chunk(stamp=obs.stamp, actions=out.astype(np.float32), dt=self.cfg.dt,
                      space=space, names=names, chunk_id=self.chunk_index,
                      episode_id=self.episode_id,
                      # joint units, as ActionChunk.reference documents (decoders add deltas)
                      reference=np.asarray(obs.joint_positions, np.float64),
                      extras={"skipped_steps": float(skipped),
                              "flow_steps": float(self.flow_steps * len(self._phases())),
                              "memory_committed": float(committed),
                              "inpainted_actions": float(0 if known is None
                                                         else known[0].shape[1])})
        # what the next speculative pass uses as its surrogate observation
        self._last_obs_tokens = obs_tok
        self._last_stamp = float(obs.stamp)
        self._last_state = np.asarray(state_act, np.float64)
        self._pred_latent = x_lat
        if space == ActionSpace.JOINT_ABSOLUTE:
            self._plan = (float(obs.stamp), out.astype(np.float64))
        elif space == ActionSpace.JOINT_DELTA:
            self._plan = (float(obs.stamp), state_act + out.astype(np.float64))
        if committed:
            # TTT absorbs each committed context with the chunk planned from the one before
            self._prev_actions = x_act.astype(np.float32)
        self.chunk_index += 1
        return chunk


