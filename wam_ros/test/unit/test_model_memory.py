"""KV cache and Dual-State TTT memory: incremental inference equals full recomputation, the
TTT inner gradient is right, and memory size does not grow with the episode.

Tolerance: float32 state tolerance, |incremental - full| <= 1e-5 absolute on velocities of
order 1 (the two paths differ only in the order of floating-point sums)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wam_ros.model.ttt import mlp, self_grad, self_loss
from wam_ros.runtime import load_policy
from wam_ros.testing.checkpoints import fake_observation, make_tiny_checkpoint, tiny_model

ATOL = 1e-5


def _window_inputs(model, c: int, seed: int = 0):
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    n_obs, cf = cfg.n_obs_tokens, model.feature_dim
    return {
        "obs": torch.randn(1, c, n_obs, cf, generator=g),
        "state": torch.randn(1, c, cfg.action_dim, generator=g),
        "task": torch.randn(1, cfg.d_model, generator=g),
        "x_lat": torch.randn(1, c, n_obs, cf, generator=g),
        "s_lat": torch.rand(1, c, generator=g),
        "x_act": torch.randn(1, c, cfg.horizon, cfg.model_action_dim, generator=g),
        "s_act": torch.rand(1, c, generator=g),
        "prev": torch.randn(1, c, cfg.horizon, cfg.model_action_dim, generator=g),
        "has_prev": (torch.arange(c) > 0).float()[None],
    }


def _incremental(model, inp, c: int, memory: str, see_latent: list[bool]):
    """Chunk by chunk through the inference pieces, with an explicit bounded KV cache."""
    cfg = model.cfg
    window = cfg.memory_window - 1
    cache: list[tuple[torch.Tensor, torch.Tensor]] = []
    w = model.ttt.initial(1)
    v_lats, v_acts = [], []
    for i in range(c):
        pos = torch.tensor([float(i)])
        obs, state = inp["obs"][:, i], inp["state"][:, i]
        if memory == "kv":
            if cache:
                pk = torch.cat([k for k, _ in cache], dim=3)
                pv = torch.cat([v for _, v in cache], dim=3)
                pb = torch.zeros(1, pk.shape[3])
            else:
                pk = pv = pb = None
            k, v, _ = model.context(obs, state, inp["task"], pos, pk, pv, pb)
            cache.append((k, v))
            cache = cache[-window:]  # eviction of the oldest block
            prefix_k = k if pk is None else torch.cat([pk, k], 3)
            prefix_v = v if pv is None else torch.cat([pv, v], 3)
            wr = None
        else:
            prefix_k, prefix_v, w = model.context(obs, state, inp["task"], pos, w=w,
                                                  prev_actions=inp["prev"][:, i],
                                                  has_prev=inp["has_prev"][:, i])
            wr = w
        bias = torch.zeros(1, prefix_k.shape[3])
        v_lat, lk, lv = model.step_latent(inp["x_lat"][:, i], inp["s_lat"][:, i], pos,
                                          prefix_k, prefix_v, bias, wr)
        if see_latent[i]:
            ak, av = torch.cat([prefix_k, lk], 3), torch.cat([prefix_v, lv], 3)
        else:
            ak, av = prefix_k, prefix_v
        v_act = model.step_action(inp["x_act"][:, i], inp["s_act"][:, i], pos, ak, av,
                                  torch.zeros(1, ak.shape[3]), wr)
        v_lats.append(v_lat)
        v_acts.append(v_act)
    return torch.stack(v_lats, 1), torch.stack(v_acts, 1)


@pytest.mark.parametrize("memory", ["kv", "ttt"])
def test_incremental_equals_full_recomputation(memory: str) -> None:
    model = tiny_model()
    c = model.cfg.memory_window + 3  # beyond the window: eviction happens
    inp = _window_inputs(model, c)
    see = [i % 3 != 1 for i in range(c)]  # mix joint and fast chunks
    with torch.no_grad():
        full_lat, full_act = model.forward_full(
            inp["obs"], torch.ones(1, c), inp["state"], inp["task"], inp["x_lat"],
            inp["s_lat"], inp["x_act"], inp["s_act"], torch.tensor([see]),
            torch.zeros(1, c, dtype=torch.bool), memory, prev_actions=inp["prev"],
            has_prev=inp["has_prev"])
        inc_lat, inc_act = _incremental(model, inp, c, memory, see)
    assert torch.allclose(inc_lat, full_lat, atol=ATOL), (inc_lat - full_lat).abs().max()
    assert torch.allclose(inc_act, full_act, atol=ATOL), (inc_act - full_act).abs().max()


def test_kv_window_matters() -> None:
    """The check above can fail: history inside the window changes the output; history beyond
    the receptive field (n_layers * (window - 1) chunks: each layer reaches one window further
    back through the cached blocks, as in sliding-window attention) does not."""
    model = tiny_model()
    cfg = model.cfg
    c = cfg.n_layers * (cfg.memory_window - 1) + 2
    inp = _window_inputs(model, c)
    see = [True] * c
    args = (torch.ones(1, c), inp["state"], inp["task"], inp["x_lat"], inp["s_lat"],
            inp["x_act"], inp["s_act"], torch.tensor([see]), torch.zeros(1, c, dtype=bool),
            "kv")
    with torch.no_grad():
        base = model.forward_full(inp["obs"], *args)[1][:, -1]
        early, recent = inp["obs"].clone(), inp["obs"].clone()
        early[:, 0] += 1.0  # chunk 0 is beyond the last chunk's receptive field
        recent[:, -2] += 1.0
        out_early = model.forward_full(early, *args)[1][:, -1]
        out_recent = model.forward_full(recent, *args)[1][:, -1]
    assert torch.allclose(out_early, base, atol=ATOL)
    assert (out_recent - base).abs().max() > 1e-4


def test_ttt_closed_form_gradient_matches_autograd() -> None:
    g = torch.Generator().manual_seed(1)
    b, n, d, m = 2, 5, 8, 16
    k, v = torch.randn(b, n, d, generator=g), torch.randn(b, n, d, generator=g)
    w = [torch.randn(b, d, m, generator=g) * 0.3, torch.randn(b, m, generator=g) * 0.1,
         torch.randn(b, m, d, generator=g) * 0.3, torch.randn(b, d, generator=g) * 0.1]
    for t in w:
        t.requires_grad_(True)
    self_loss(k, v, tuple(w)).sum().backward()
    closed = self_grad(k, v, tuple(t.detach() for t in w))
    for auto, mine in zip(w, closed):
        assert torch.allclose(auto.grad, mine, atol=1e-5)
    assert mlp(k, tuple(w)).shape == (b, n, d)


def test_ttt_token_weights_ignore_padding() -> None:
    """A zero-weight token (no previous chunk at an episode start) changes nothing."""
    model = tiny_model()
    with torch.no_grad():
        z = torch.randn(1, 5, model.cfg.d_model)
        pad = torch.randn(1, 3, model.cfg.d_model)
        w0 = model.ttt.initial(1)
        plain = model.ttt.absorb(w0, z)
        weight = torch.tensor([[1.0] * 5 + [0.0] * 3])
        padded = model.ttt.absorb(w0, torch.cat([z, pad], 1), weight)
        counted = model.ttt.absorb(w0, torch.cat([z, pad], 1), torch.ones(1, 8))
    for a, b in zip(plain, padded):
        assert torch.allclose(a, b, atol=1e-6)
    assert max((a - c).abs().max() for a, c in zip(plain, counted)) > 1e-6


def test_ttt_absorb_reduces_self_supervised_loss() -> None:
    model = tiny_model()
    with torch.no_grad():
        z = torch.randn(1, 7, model.cfg.d_model)
        w0 = model.ttt.initial(1)
        w1 = model.ttt.absorb(w0, z)
        x = model.ttt.norm(z)
        k, v = model.ttt.theta_k(x), model.ttt.theta_v(x)
        assert float(self_loss(k, v, w1)) < float(self_loss(k, v, w0))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


def test_ttt_state_size_independent_of_episode_length(ckpt) -> None:
    policy = load_policy(ckpt, memory="ttt", mode="fast", flow_steps=1)
    sizes = []
    for i in range(40):
        policy.infer(fake_observation("cobot_magic", policy.meta.image_size, i))
        sizes.append(policy.memory_state_bytes)
    assert len(set(sizes)) == 1 and sizes[0] > 0
    assert policy.ttt.updates == 40
    assert all(np.all(np.isfinite(w)) for w in policy.ttt.weights)
    policy.reset()
    assert policy.memory_state_bytes == sizes[0] and policy.ttt.updates == 0


def test_kv_state_bounded_by_window(ckpt) -> None:
    policy = load_policy(ckpt, memory="kv", mode="fast", flow_steps=1)
    window = policy.cfg.memory_window - 1
    sizes = []
    for i in range(window + 5):
        policy.infer(fake_observation("cobot_magic", policy.meta.image_size, i))
        sizes.append(policy.memory_state_bytes)
    per_chunk = sizes[0]
    assert sizes[:window] == [per_chunk * (i + 1) for i in range(window)]
    assert sizes[window:] == [per_chunk * window] * 5
    assert policy.kv.evicted == 5
    policy.reset()
    assert policy.memory_state_bytes == 0


def test_memory_changes_the_output(ckpt) -> None:
    """Same observation, different history -> different chunk (the memory is used)."""
    outs = {}
    for memory in ("kv", "ttt"):
        policy = load_policy(ckpt, memory=memory, mode="fast")
        obs = fake_observation("cobot_magic", policy.meta.image_size, 7)
        fresh = policy.infer(obs).actions
        policy.reset()
        for i in range(3):
            policy.infer(fake_observation("cobot_magic", policy.meta.image_size, i))
        policy.chunk_index = 0  # same position and noise as the fresh run
        outs[memory] = np.abs(policy.infer(obs).actions - fresh).max()
    assert outs["kv"] > 1e-6 and outs["ttt"] > 1e-6


@pytest.mark.parametrize("memory", ["kv", "ttt"])
def test_memory_keeps_observations_one_chunk_apart(ckpt, memory: str) -> None:
    """Asked for a chunk every quarter chunk (async), the policy plans from every observation
    but commits one to memory per chunk duration, the spacing training used."""
    policy = load_policy(ckpt, memory=memory, mode="fast", flow_steps=1)
    stride = policy.cfg.horizon * policy.cfg.dt
    assert policy.memory_stride == pytest.approx(stride)
    committed = []
    for i in range(12):
        obs = fake_observation("cobot_magic", policy.meta.image_size, i)
        obs.stamp = i * stride / 4
        committed.append(policy.infer(obs).extras["memory_committed"])
    assert committed == [1.0, 0.0, 0.0, 0.0] * 3
    assert policy.memory_pos == 3 and policy.chunk_index == 12
    if memory == "kv":
        assert len(policy.kv) == min(3, policy.cfg.memory_window - 1)
    else:
        assert policy.ttt.updates == 3
    # 0: every observation joins memory (the behaviour without a stride)
    every = load_policy(ckpt, memory=memory, mode="fast", flow_steps=1, memory_stride=0.0)
    for i in range(4):
        obs = fake_observation("cobot_magic", every.meta.image_size, i)
        obs.stamp = i * stride / 4
        assert every.infer(obs).extras["memory_committed"] == 1.0
    with pytest.raises(ValueError, match="memory_stride"):
        load_policy(ckpt, memory_stride=-1.0)
