"""The reference World Action Model: frozen encoder -> Mixture-of-Transformers -> flow heads.

Tokens of one chunk c (all share the chunk index c, used by rotary position encoding, so cached
keys stay valid as the window slides):
    context  : n_obs observation tokens (video expert) + 1 state/task token (action expert)
    latent   : n_obs noisy future-latent tokens (video expert): encoder features one chunk ahead
    actions  : H noisy action tokens (action expert)
Attention (one softmax shared by both experts, MoT):
    context -> context of chunks c-W+1 .. c       (block-causal across chunks, window W)
    latent  -> context as above + latent of c     (bidirectional within the latent block)
    actions -> context as above + actions of c (+ latent of c unless the chunk is `fast`)
Each layer reaches one window further back through the cached context blocks (sliding-window
attention), so the receptive field is n_layers * (W - 1) past chunks while the cache holds W - 1.
The context never attends to noisy tokens, so its keys/values are computed once per chunk and
reused by every flow step (Fast-WAM) and by later chunks (KV cache, DreamZero). With the TTT
memory the window is 1 (the chunk itself) and history enters through the TTT layer instead.

Flow matching (rectified flow): x_s = (1 - s) * noise + s * x, target velocity x - noise, s = 0
is noise and s = 1 clean. Timesteps are decoupled per head: actions s ~ U(0, 1), latent
s = 1 - eta with eta ~ Beta(7, 1) (DreamZero-Flash: the latent is mostly very noisy while actions
are learned at every level, so one-step actions work next to an unfinished latent).

The same module serves training (`loss`, one masked pass over several chunks) and inference
(`encode`, `context`, `step_latent`, `step_action`, `absorb_latent`: the pieces the runtime and
the ONNX export use). Shapes: B batch, C chunks, N tokens, d model width, h heads, L layers.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch
from torch import nn

from wam_ros.model.config import ModelConfig
from wam_ros.model.encoders import build_encoder
from wam_ros.model.ttt import FastWeights, TTTMemory

NEG = -1e9  # additive attention bias of a masked key


def task_bucket_ids(task: str, buckets: int, max_words: int = 16) -> list[int]:
    """Hashed bag of words (stable across processes: crc32, not Python's hash)."""
    words = task.lower().split()[:max_words] or [""]
    return [zlib.crc32(w.encode()) % buckets for w in words]


def rope(x: torch.Tensor, pos: torch.Tensor, base: float = 100.0) -> torch.Tensor:
    """Rotary encoding of chunk indices: x (B, h, N, hd), pos (N,) float."""
    hd = x.shape[-1]
    inv = base ** (-torch.arange(0, hd, 2, dtype=x.dtype, device=x.device) / hd)  # (hd/2,)
    ang = pos.to(x.dtype)[:, None] * inv[None]  # (N, hd/2)
    cos, sin = torch.cos(ang), torch.sin(ang)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2)


class TimestepEmbed(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.d = d
        self.mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))

    def forward(self, s: torch.Tensor) -> torch.Tensor:  # (...,) -> (..., d)
        half = self.d // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=s.device) / half)
        ang = (s * 1000.0)[..., None] * freqs
        return self.mlp(torch.cat([torch.cos(ang), torch.sin(ang)], dim=-1))


class Expert(nn.Module):
    """Per-modality norms, attention projections and MLP (MoT)."""

    def __init__(self, d: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, mlp_ratio * d), nn.GELU(approximate="tanh"),
                                 nn.Linear(mlp_ratio * d, d))


VIDEO, ACTION = 0, 1


class MoTBlock(nn.Module):
    def __init__(self, d: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.heads = heads
        self.experts = nn.ModuleList([Expert(d, mlp_ratio), Expert(d, mlp_ratio)])

    def forward(
        self, xv: torch.Tensor | None, xa: torch.Tensor | None, pos: torch.Tensor,
        prefix_k: torch.Tensor | None, prefix_v: torch.Tensor | None, bias: torch.Tensor,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """xv (B, Nv, d) video-expert tokens, xa (B, Na, d) action-expert tokens (either may be
        None: no zero-size segments, which exported graphs handle badly), pos (Nv+Na,),
        prefix_k/v (B, h, P, hd) already rotated, bias (B or 1, 1, Nv+Na, P+Nv+Na) additive.
        Returns new xv, xa and this segment's rotated keys and values (B, h, Nv+Na, hd)."""
        parts = [(e, x) for e, x in ((VIDEO, xv), (ACTION, xa)) if x is not None]
        b, _, d = parts[0][1].shape
        sizes = [x.shape[1] for _, x in parts]
        n = sum(sizes)
        h = self.heads
        qkv = torch.cat([self.experts[e].qkv(self.experts[e].norm1(x)) for e, x in parts], 1)
        q, k, v = qkv.view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)  # (B, h, N, hd)
        q, k = rope(q, pos), rope(k, pos)
        keys = k if prefix_k is None else torch.cat([prefix_k, k], dim=2)
        vals = v if prefix_v is None else torch.cat([prefix_v, v], dim=2)
        att = (q @ keys.transpose(-1, -2)) * (1.0 / math.sqrt(d // h)) + bias
        out = (torch.softmax(att, dim=-1) @ vals).transpose(1, 2).reshape(b, n, d)
        outs: list[torch.Tensor | None] = [None, None]
        start = 0
        for (e, x_in), size in zip(parts, sizes):
            ex = self.experts[e]
            x = x_in + ex.proj(out[:, start:start + size])
            outs[e] = x + ex.mlp(ex.norm2(x))
            start += size
        return outs[VIDEO], outs[ACTION], k, v


class WorldActionModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if not cfg.action_layout or not cfg.camera_names:
            raise ValueError("ModelConfig needs the robot interface (action_layout, cameras)")
        self.cfg = cfg
        d, a, dim = cfg.d_model, cfg.model_action_dim, cfg.action_dim
        self.encoder = build_encoder(cfg)
        cf = self.encoder.out_channels
        self.feature_dim = cf
        self.lat_in = nn.Linear(cf, d)
        self.lat_out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, cf))
        self.act_in = nn.Linear(a, d)
        self.act_out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, a))
        self.state_in = nn.Linear(dim, d)
        self.task_emb = nn.Embedding(cfg.task_buckets, d)
        self.obs_slot = nn.Parameter(torch.randn(cfg.n_obs_tokens, d) * 0.02)
        self.role = nn.Parameter(torch.randn(2, d) * 0.02)  # 0 observed context, 1 future
        self.act_slot = nn.Parameter(torch.randn(cfg.horizon, d) * 0.02)
        self.t_lat = TimestepEmbed(d)
        self.t_act = TimestepEmbed(d)
        self.ttt = TTTMemory(d, cfg.ttt_expansion, cfg.ttt_alpha_init, cfg.ttt_lr_init,
                             cfg.ttt_grad_clip)
        self.blocks = nn.ModuleList(
            MoTBlock(d, cfg.n_heads, cfg.mlp_ratio) for _ in range(cfg.n_layers))
        # training only: object poses from the observation tokens (model.object_dim)
        self.object_head = None
        if cfg.object_dim > 0:
            self.object_head = nn.Sequential(nn.Linear(cfg.n_obs_tokens * cf, 4 * d), nn.GELU(),
                                             nn.Linear(4 * d, cfg.object_dim))
        # normalisation statistics (filled from the data before training; saved with weights)
        stats = [("feat", cf), ("state", dim), ("action", a)]
        stats += [("object", cfg.object_dim)] if cfg.object_dim > 0 else []
        for name, n in stats:
            self.register_buffer(f"{name}_mean", torch.zeros(n))
            self.register_buffer(f"{name}_std", torch.ones(n))

    # ---- housekeeping -----------------------------------------------------------------------
    def train(self, mode: bool = True) -> WorldActionModel:
        super().train(mode)
        if not self.cfg.encoder_trainable:
            self.encoder.eval()  # frozen BatchNorm statistics
        return self

    @property
    def bounded_tokens(self) -> bool:
        """The encoder's tokens live in a fixed range (keypoint coordinates in [-1, 1]): no
        token norm, no statistics from the untrained encoder."""
        return bool(getattr(self.encoder, "bounded", False))

    @property
    def head_dim(self) -> int:
        return self.cfg.d_model // self.cfg.n_heads

    def set_stats(self, stats: dict[str, np.ndarray | torch.Tensor]) -> None:
        for name, value in stats.items():
            buf = getattr(self, name)
            buf.copy_(torch.as_tensor(np.asarray(value), dtype=buf.dtype))

    def task_vector(self, tasks: list[str]) -> torch.Tensor:
        """(B, d) mean embedding of each task's hashed words."""
        rows = [self.task_emb.weight[task_bucket_ids(t, self.cfg.task_buckets)].mean(0)
                for t in tasks]
        return torch.stack(rows)

    # ---- embeddings ---------------------------------------------------------------------------
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, ncam, 3, H, W) float 0..255 -> (B, n_obs, Cf) normalised feature tokens."""
        b, ncam = images.shape[:2]
        feats = self.raw_tokens(images.flatten(0, 1))  # (B*ncam, g*g, Cf)
        feats = feats.reshape(b, ncam * feats.shape[1], feats.shape[2])
        return (feats - self.feat_mean) / self.feat_std

    def raw_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) 0..255 -> (N, g*g, Cf) tokens before normalisation."""
        feats = self.encoder(images)
        if self.cfg.encoder_trainable and not self.bounded_tokens:
            # a trained encoder's feature scale drifts away from the statistics taken at the
            # start; a parameter-free layer norm per token keeps the scale of the tokens, and
            # of the future-latent target made from them (see `loss`), fixed
            feats = nn.functional.layer_norm(feats, feats.shape[-1:])
        return feats

    def embed_context(self, obs: torch.Tensor, obs_level: torch.Tensor, state: torch.Tensor,
                      task_vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs (..., n_obs, Cf), obs_level (...,), state (..., D), task (..., d)."""
        xv = self.lat_in(obs) + self.obs_slot + self.role[0] + self.t_lat(obs_level)[..., None, :]
        xa = (self.state_in(state) + task_vec)[..., None, :]
        return xv, xa

    def embed_latent(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return self.lat_in(x) + self.obs_slot + self.role[1] + self.t_lat(s)[..., None, :]

    def embed_action(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return self.act_in(x) + self.act_slot + self.t_act(s)[..., None, :]

    def history_tokens(self, ctx: torch.Tensor, prev_actions: torch.Tensor,
                       has_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens the long-term TTT memory absorbs for one chunk, with their weights:
        the context tokens (B, n_ctx, d) and the executed previous chunk's clean actions
        (B, H, A), weighted by has_prev (B,) (0 at an episode start)."""
        one = torch.ones(ctx.shape[0], dtype=ctx.dtype, device=ctx.device)
        acts = self.embed_action(prev_actions, one)
        weight = torch.cat([torch.ones(ctx.shape[:2], dtype=ctx.dtype, device=ctx.device),
                            has_prev[:, None].expand(-1, acts.shape[1])], dim=1)
        return torch.cat([ctx, acts], dim=1), weight

    # ---- training: one masked pass over C chunks ------------------------------------------
    def forward_full(
        self, obs: torch.Tensor, obs_level: torch.Tensor, state: torch.Tensor,
        task_vec: torch.Tensor, x_lat: torch.Tensor, s_lat: torch.Tensor, x_act: torch.Tensor,
        s_act: torch.Tensor, see_latent: torch.Tensor, absorb_latent: torch.Tensor,
        memory: str, pos0: float = 0.0, prev_actions: torch.Tensor | None = None,
        has_prev: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Velocities for every chunk of a window, as one block-masked sequence.

        obs (B, C, n_obs, Cf) context observation tokens, obs_level (B, C), state (B, C, D),
        task_vec (B, d), x_lat (B, C, n_obs, Cf) with s_lat (B, C), x_act (B, C, H, A) with
        s_act (B, C), see_latent / absorb_latent (B, C) bool. memory kv: window memory_window;
        ttt: window 1 and the TTT layer carries the history; long-term memory absorbs each
        chunk's context and the clean actions executed before it: prev_actions (B, C, H, A),
        has_prev (B, C) (0 at an episode start; default: none). Returns v_lat, v_act.
        """
        cfg = self.cfg
        b, c, n_obs, _ = obs.shape
        hz = cfg.horizon
        ctx_v, ctx_a = self.embed_context(obs, obs_level, state, task_vec[:, None])
        lat = self.embed_latent(x_lat, s_lat)  # (B, C, n_obs, d)
        act = self.embed_action(x_act, s_act)  # (B, C, H, d)
        window = cfg.memory_window
        if memory == "ttt":
            window = 1
            w = self.ttt.initial(b)
            if prev_actions is None or has_prev is None:
                prev_actions = torch.zeros_like(x_act)
                has_prev = torch.zeros(b, c, dtype=obs.dtype, device=obs.device)
            ctx_v_l, ctx_a_l, lat_l, act_l = [], [], [], []
            for i in range(c):
                ctx_i = torch.cat([ctx_v[:, i], ctx_a[:, i]], dim=1)
                # long-term: real history only (this observation, the executed actions)
                w = self.ttt.absorb(w, *self.history_tokens(ctx_i, prev_actions[:, i],
                                                            has_prev[:, i]))
                ctx_i = self.ttt.read(w, ctx_i)
                ctx_v_l.append(ctx_i[:, :n_obs])
                ctx_a_l.append(ctx_i[:, n_obs:])
                lat_l.append(self.ttt.read(w, lat[:, i]))
                w_work = self.ttt.absorb(w, lat[:, i])  # working copy absorbs the latent
                act_plain = self.ttt.read(w, act[:, i])
                act_work = self.ttt.read(w_work, act[:, i])
                sel = absorb_latent[:, i].view(b, 1, 1)
                act_l.append(torch.where(sel, act_work, act_plain))
            ctx_v, ctx_a = torch.stack(ctx_v_l, 1), torch.stack(ctx_a_l, 1)
            lat, act = torch.stack(lat_l, 1), torch.stack(act_l, 1)
        elif memory != "kv":
            raise ValueError(f"unknown memory {memory!r}; allowed: kv, ttt")

        # token bookkeeping: video = [ctx obs (C*n_obs), latent (C*n_obs)],
        #                    action = [ctx state/task (C), actions (C*H)]
        ar = torch.arange(c, device=obs.device)
        chunk = torch.cat([ar.repeat_interleave(n_obs), ar.repeat_interleave(n_obs), ar,
                           ar.repeat_interleave(hz)])
        kind = torch.cat([torch.zeros(c * n_obs), torch.ones(c * n_obs), torch.zeros(c),
                          torch.full((c * hz,), 2.0)]).to(obs.device)  # 0 ctx, 1 lat, 2 act
        cq, ck = chunk[:, None], chunk[None, :]
        kq, kk = kind[:, None], kind[None, :]
        ctx_ok = (kk == 0) & (ck <= cq) & (cq - ck < window)
        same = ck == cq
        lat_ok = same & (kk == 1) & (kq >= 1)
        act_ok = same & (kk == 2) & (kq == 2)
        allowed = (ctx_ok | lat_ok | act_ok)[None].expand(b, -1, -1).clone()
        # actions of chunks whose `see_latent` is off do not see that chunk's latent
        hide = (~see_latent)[:, chunk]  # (B, N) per query's chunk
        block = (kq == 2) & (kk == 1) & same  # (N, N)
        allowed &= ~(hide[:, :, None] & block[None])
        bias = torch.zeros(allowed.shape, dtype=obs.dtype, device=obs.device)
        bias = bias.masked_fill(~allowed, NEG)[:, None]  # (B, 1, N, N)

        xv = torch.cat([ctx_v.flatten(1, 2), lat.flatten(1, 2)], dim=1)
        xa = torch.cat([ctx_a.flatten(1, 2), act.flatten(1, 2)], dim=1)
        pos = chunk.to(obs.dtype) + pos0
        for blk in self.blocks:
            xv, xa, _, _ = blk(xv, xa, pos, None, None, bias)
        v_lat = self.lat_out(xv[:, c * n_obs:]).view(b, c, n_obs, -1)
        v_act = self.act_out(xa[:, c:]).view(b, c, hz, -1)
        return v_lat, v_act

    def loss(self, feats: torch.Tensor, state: torch.Tensor, actions: torch.Tensor,
             task_vec: torch.Tensor, memory: str, generator: torch.Generator | None = None,
             objects: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Joint flow-matching losses on a window of C chunks.

        feats (B, C+1, n_obs, Cf) normalised tokens of the observation at each chunk start and
        one chunk after the last; state (B, C, D) and actions (B, C, H, A) normalised;
        objects (B, C, object_dim) normalised object targets at each chunk start (privileged,
        with the object head only). Returns {"latent", "action", "total"} (+ "object": its
        mean squared error, not weighted into "total": the trainer adds it).
        """
        cfg = self.cfg
        b, c = state.shape[:2]
        dev, dt = feats.device, feats.dtype

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=generator, device=dev, dtype=dt)

        def randn_like(x: torch.Tensor) -> torch.Tensor:
            return torch.randn(x.shape, generator=generator, device=dev, dtype=dt)

        ctx = feats[:, :c]
        out: dict[str, torch.Tensor] = {}
        if objects is not None:
            if self.object_head is None:
                raise ValueError("object targets given to a model without an object head")
            pred = self.object_head(ctx.flatten(2))  # the clean observation tokens
            out["object"] = ((pred - objects) ** 2).mean()
        # The future latent is a target, not a path for gradients: with a trainable encoder
        # the latent loss could otherwise be driven down by collapsing the features
        # (stop-gradient on the target, as in self-predictive representation learning).
        target = feats[:, 1:].detach()
        # CLWM history augmentation: noisy context so the action head tolerates imperfect
        # (e.g. speculative, predicted) history
        noisy = rand(b) < cfg.p_history_noise
        s_aug = cfg.history_noise_min + (1 - cfg.history_noise_min) * rand(b)
        level = torch.where(noisy, s_aug, torch.ones_like(s_aug))[:, None].expand(b, c)
        lv = level[..., None, None]
        ctx = (1 - lv) * randn_like(ctx) + lv * ctx

        # which chunks: two-stage (actions see the clean latent), fast (no latent), joint
        u = rand(b, c)
        clean = u < cfg.p_clean_latent
        fast = (u >= cfg.p_clean_latent) & (u < cfg.p_clean_latent + cfg.p_fast)
        beta = torch.distributions.Beta(torch.tensor(cfg.latent_beta[0], device=dev),
                                        torch.tensor(cfg.latent_beta[1], device=dev))
        if generator is None:
            eta = beta.sample((b, c)).to(dt)
        else:  # Beta sampling has no generator argument: inverse CDF of Beta(a, 1) if b == 1
            eta = _beta_sample(cfg.latent_beta, rand(b, c))
        s_lat = torch.where(clean, torch.ones_like(eta), 1.0 - eta)
        s_act = rand(b, c)
        n_lat, n_act = randn_like(target), randn_like(actions)
        sl, sa = s_lat[..., None, None], s_act[..., None, None]
        x_lat = (1 - sl) * n_lat + sl * target
        x_act = (1 - sa) * n_act + sa * actions
        # the clean actions of the chunk before each one (none before the window's first)
        prev = torch.cat([torch.zeros_like(actions[:, :1]), actions[:, :-1]], dim=1)
        has_prev = (torch.arange(c, device=dev) > 0).to(dt)[None].expand(b, c)
        v_lat, v_act = self.forward_full(ctx, level, state, task_vec, x_lat, s_lat, x_act,
                                         s_act, ~fast, clean, memory, prev_actions=prev,
                                         has_prev=has_prev)
        lat_err = ((v_lat - (target - n_lat)) ** 2).mean(dim=(2, 3))  # (B, C)
        keep = (~clean).to(dt)
        latent_loss = (lat_err * keep).sum() / keep.sum().clamp(min=1.0)
        action_loss = ((v_act - (actions - n_act)) ** 2).mean()
        out.update(latent=latent_loss, action=action_loss, total=latent_loss + action_loss)
        return out

    def forward(self, feats: torch.Tensor, state: torch.Tensor, actions: torch.Tensor,
                task_vec: torch.Tensor, memory: str,
                objects: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Training losses (so DistributedDataParallel can wrap the model)."""
        return self.loss(feats, state, actions, task_vec, memory, objects=objects)

    # ---- inference pieces (mirrored one-to-one by the ONNX graphs) ------------------------
    def _run(self, xv: torch.Tensor | None, xa: torch.Tensor | None, pos: torch.Tensor,
             prefix_k: torch.Tensor | None, prefix_v: torch.Tensor | None,
             prefix_bias: torch.Tensor | None,
             ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Run a segment after a cached prefix; returns xv, xa, stacked keys/values
        (L, B, h, Nv+Na, hd). prefix_k/v (L, B, h, P, hd), prefix_bias (B, P)."""
        parts = [x for x in (xv, xa) if x is not None]
        b, n = parts[0].shape[0], sum(x.shape[1] for x in parts)
        own = torch.zeros(b, n, dtype=parts[0].dtype, device=parts[0].device)
        bias = own if prefix_bias is None else torch.cat([prefix_bias, own], dim=1)
        bias = bias[:, None, None, :]
        posv = pos.reshape(1).expand(n)
        ks, vs = [], []
        for i, blk in enumerate(self.blocks):
            pk = None if prefix_k is None else prefix_k[i]
            pv = None if prefix_v is None else prefix_v[i]
            xv, xa, k, v = blk(xv, xa, posv, pk, pv, bias)
            ks.append(k)
            vs.append(v)
        return xv, xa, torch.stack(ks), torch.stack(vs)

    def context(self, obs: torch.Tensor, state: torch.Tensor, task_vec: torch.Tensor,
                pos: torch.Tensor, past_k: torch.Tensor | None = None,
                past_v: torch.Tensor | None = None, past_bias: torch.Tensor | None = None,
                w: FastWeights | None = None, prev_actions: torch.Tensor | None = None,
                has_prev: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, FastWeights | None]:
        """Context block of the current chunk -> its keys/values (L, B, h, n_ctx, hd).

        kv memory: pass the cached past keys/values (L, B, h, P, hd) and bias (B, P).
        ttt memory: pass the long-term fast weights w and the previous (executed) chunk's
        normalised actions prev_actions (B, H, A) with has_prev (B,) (0 at an episode start);
        w absorbs them with this context and the updated weights are returned (the caller
        keeps them for real observations, discards them for a speculative surrogate)."""
        n_obs = obs.shape[1]
        level = torch.ones(obs.shape[0], dtype=obs.dtype, device=obs.device)
        xv, xa = self.embed_context(obs, level, state, task_vec)
        if w is not None:
            ctx = torch.cat([xv, xa], dim=1)
            if prev_actions is None or has_prev is None:
                b = obs.shape[0]
                prev_actions = torch.zeros(b, self.cfg.horizon, self.cfg.model_action_dim,
                                           dtype=obs.dtype, device=obs.device)
                has_prev = torch.zeros(b, dtype=obs.dtype, device=obs.device)
            w = self.ttt.absorb(w, *self.history_tokens(ctx, prev_actions, has_prev))
            ctx = self.ttt.read(w, ctx)
            xv, xa = ctx[:, :n_obs], ctx[:, n_obs:]
        _, _, k, v = self._run(xv, xa, pos, past_k, past_v, past_bias)
        return k, v, w

    def step_latent(self, x_lat: torch.Tensor, s: torch.Tensor, pos: torch.Tensor,
                    prefix_k: torch.Tensor, prefix_v: torch.Tensor, prefix_bias: torch.Tensor,
                    w: FastWeights | None = None,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Latent velocity (B, n_obs, Cf) and the latent block's keys/values."""
        xv = self.embed_latent(x_lat, s)
        if w is not None:
            xv = self.ttt.read(w, xv)
        xv, _, k, v = self._run(xv, None, pos, prefix_k, prefix_v, prefix_bias)
        return self.lat_out(xv), k, v

    def step_action(self, x_act: torch.Tensor, s: torch.Tensor, pos: torch.Tensor,
                    prefix_k: torch.Tensor, prefix_v: torch.Tensor, prefix_bias: torch.Tensor,
                    w: FastWeights | None = None) -> torch.Tensor:
        """Action velocity (B, H, A) given the prefix (context [+ latent] keys/values)."""
        xa = self.embed_action(x_act, s)
        if w is not None:
            xa = self.ttt.read(w, xa)
        _, xa, _, _ = self._run(None, xa, pos, prefix_k, prefix_v, prefix_bias)
        return self.act_out(xa)

    def absorb_latent(self, w: FastWeights, x_lat: torch.Tensor) -> FastWeights:
        """Working memory absorbs the (predicted, clean) future latent (two-stage, CLWM)."""
        s = torch.ones(x_lat.shape[0], dtype=x_lat.dtype, device=x_lat.device)
        return self.ttt.absorb(w, self.embed_latent(x_lat, s))


def _beta_sample(ab: tuple[float, float], u: torch.Tensor) -> torch.Tensor:
    a, b = ab
    if b == 1.0:
        return u ** (1.0 / a)  # inverse CDF of Beta(a, 1)
    if a == 1.0:
        return 1.0 - (1.0 - u) ** (1.0 / b)
    # general case: the reparameterised sampler (not seeded by the generator)
    return torch.distributions.Beta(a, b).sample(u.shape).to(u.dtype)


def make_model(cfg: ModelConfig) -> WorldActionModel:
    return WorldActionModel(cfg)


__all__ = ["WorldActionModel", "make_model", "task_bucket_ids"]
