"""Training: a tiny model on a small synthetic dataset learns both flow-matching heads;
checkpoints round-trip without pickle; resume continues; the CLI works."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import yaml

from wam_ros.core.config import ConfigError
from wam_ros.core.robot import RobotSpec
from wam_ros.data.synthetic_dataset import make_synthetic_dataset
from wam_ros.model.checkpoint import load_model, read_checkpoint_config
from wam_ros.model.config import load_config
from wam_ros.model.train import train
from wam_ros.runtime import load_policy
from wam_ros.testing.checkpoints import fake_observation

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("data")
    return make_synthetic_dataset(root, RobotSpec.load("cobot_magic"), n_episodes=12, length=40)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory: pytest.TempPathFactory):
    model_cfg, train_cfg = load_config("tiny")
    train_cfg.steps, train_cfg.batch_size, train_cfg.val_every = 400, 12, 200
    train_cfg.val_fraction = 0.25
    out = tmp_path_factory.mktemp("ckpt")
    return train(data, (model_cfg, train_cfg), out, progress=False, log=lambda *_: None)


def test_both_flow_matching_losses_drop_well_below_start(trained) -> None:
    first, last = trained["history"][0], trained["history"][-1]
    assert first["step"] == 0 and last["step"] == 400
    for memory in ("kv", "ttt"):
        for head in ("latent", "action"):
            key = f"{head}_{memory}"
            # validation episodes the model never trained on, fixed noise
            assert last[key] < 0.5 * first[key], (key, first[key], last[key])


def test_checkpoint_round_trip_never_unpickles(trained, monkeypatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("checkpoint loading must not unpickle")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    ckpt = trained["checkpoint"]
    loaded = load_model(ckpt)
    original = trained["model"].state_dict()
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, original[name]), name
    cfg, _ = read_checkpoint_config(ckpt)
    assert cfg == trained["model"].cfg
    policy = load_policy(ckpt)
    chunk = policy.infer(fake_observation("cobot_magic", cfg.image_size, 0))
    assert np.all(np.isfinite(chunk.actions))
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "config.yaml", "curves.png", "history.csv", "model.safetensors", "stats.safetensors",
        "train_state"]


def test_resume_continues_from_saved_step(trained, data, tmp_path) -> None:
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained["checkpoint"], ckpt)
    result = train(data, "tiny", ckpt, resume=True, steps=410, progress=False,
                   log=lambda *_: None)
    steps = [h["step"] for h in result["history"]]
    assert steps[:3] == [0, 200, 400] and steps[-1] == 410
    assert not torch.equal(result["model"].act_in.weight, trained["model"].act_in.weight)


def test_init_fine_tunes_a_checkpoint_with_its_statistics(trained, data, tmp_path) -> None:
    """--init: a new run from a checkpoint's weights (not from scratch: its first validation
    is the checkpoint's last), its normalisation statistics kept, a fresh schedule; another
    robot's data and --init with --resume are refused."""
    result = train(data, "tiny", tmp_path / "ft", init=trained["checkpoint"], steps=20,
                   lr=1e-4, progress=False, log=lambda *_: None)
    first, last = result["history"][0], trained["history"][-1]
    assert first["step"] == 0 and result["history"][-1]["step"] == 20
    for key in ("action_kv", "latent_kv"):
        assert abs(first[key] - last[key]) < 0.35 * last[key] + 1e-3, (key, first, last)
    assert first["action_kv"] < 0.5 * trained["history"][0]["action_kv"]
    model, base = result["model"], trained["model"]
    for name in ("state_mean", "state_std", "action_mean", "action_std"):
        torch.testing.assert_close(getattr(model, name), getattr(base, name))
    assert not torch.equal(model.act_in.weight, base.act_in.weight)
    cfg = yaml.safe_load((tmp_path / "ft" / "config.yaml").read_text())
    assert cfg["info"]["init"] == str(trained["checkpoint"]) and cfg["train"]["lr"] == 1e-4
    other = make_synthetic_dataset(tmp_path / "g1", RobotSpec.load("agibot_g1"),
                                   n_episodes=2, length=40)
    with pytest.raises(ConfigError, match="robot agibot_g1 does not match"):
        train(other, "tiny", tmp_path / "x", init=trained["checkpoint"], progress=False,
              log=lambda *_: None)
    with pytest.raises(ConfigError, match="use one of them"):
        train(data, "tiny", tmp_path / "ft", init=trained["checkpoint"], resume=True,
              progress=False, log=lambda *_: None)


def test_init_refuses_data_its_statistics_do_not_cover(trained) -> None:
    """Keeping a checkpoint's normalisation on data far outside it (a joint its data never
    moved) would blow the losses up: refused with the joint's name, unless --new-stats."""
    from wam_ros.model.stats import check_stats_cover

    model = trained["model"]
    same = {f"{k}_{s}": getattr(model, f"{k}_{s}").clone()
            for k in ("state", "action") for s in ("mean", "std")}
    check_stats_cover(model, same, "ckpt")
    wide = dict(same, state_std=same["state_std"].clone())
    wide["state_std"][3] *= 50
    name = model.cfg.action_layout[3]
    with pytest.raises(ConfigError, match=f"state {name} spreads 50x.*--new-stats"):
        check_stats_cover(model, wide, "ckpt")
    moved = dict(same, action_mean=same["action_mean"] + 20 * same["action_std"])
    with pytest.raises(ConfigError, match="action .* spreads 20x"):
        check_stats_cover(model, moved, "ckpt")


def test_weight_ema_ramps_its_decay_and_lends_the_average() -> None:
    from wam_ros.model.ema import WeightEMA

    layer = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(0.0)
    ema = WeightEMA(layer, decay=0.5)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    ema.update(layer)  # first update: d = min(0.5, 2 / 11)
    expected = 1.0 - 2.0 / 11.0
    torch.testing.assert_close(ema.shadow["weight"], torch.full((1, 2), expected))
    for _ in range(20):  # the ramp passes 0.5 at n = 8: the decay then stays 0.5
        ema.update(layer)
    assert ema.rate() == 0.5
    with torch.no_grad():
        layer.weight.fill_(3.0)
    before = float(ema.shadow["weight"][0, 0])
    ema.update(layer)
    assert float(ema.shadow["weight"][0, 0]) == pytest.approx(0.5 * before + 1.5)
    with ema.applied(layer) as m:
        torch.testing.assert_close(m.weight, ema.shadow["weight"])
    torch.testing.assert_close(layer.weight, torch.full((1, 2), 3.0))  # restored
    with pytest.raises(ValueError, match="decay"):
        WeightEMA(layer, decay=1.0)


def test_ema_checkpoint_holds_the_average_and_resume_the_raw_weights(trained, data,
                                                                    tmp_path) -> None:
    """With train.ema_decay the checkpoint (what inference loads) holds the averaged weights,
    train_state/ the trained ones; resume restores both: continuing for no step rewrites
    them unchanged, more steps move on from them."""
    from safetensors.torch import load_file

    out = tmp_path / "ema"
    result = train(data, "tiny", out, init=trained["checkpoint"], steps=30, lr=1e-3,
                   ema=0.9, progress=False, log=lambda *_: None)
    shipped = load_file(str(out / "model.safetensors"))
    raw = load_file(str(out / "train_state" / "weights.safetensors"))
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["ema_decay"] == 0.9
    for name, value in result["model"].state_dict().items():  # the model handed back
        assert torch.equal(value, shipped[name]), name
    moved = [n for n in shipped if not torch.equal(shipped[n], raw[n])]
    assert "act_in.weight" in moved  # the average trails the trained weights
    assert all(torch.equal(shipped[n], raw[n]) for n in ("state_mean", "action_std"))
    assert np.all(np.isfinite(load_policy(out).infer(
        fake_observation("cobot_magic", result["model"].cfg.image_size, 0)).actions))

    train(data, "tiny", out, resume=True, steps=30, progress=False, log=lambda *_: None)
    for name, value in load_file(str(out / "model.safetensors")).items():
        assert torch.equal(value, shipped[name]), name
    for name, value in load_file(str(out / "train_state" / "weights.safetensors")).items():
        assert torch.equal(value, raw[name]), name
    more = train(data, "tiny", out, resume=True, steps=35, progress=False,
                 log=lambda *_: None)
    assert more["history"][-1]["step"] == 35
    assert not torch.equal(load_file(str(out / "model.safetensors"))["act_in.weight"],
                           shipped["act_in.weight"])
    with pytest.raises(ConfigError, match="--ema"):
        train(data, "tiny", tmp_path / "bad", ema=1.5, progress=False, log=lambda *_: None)


def test_train_cli(data, tmp_path) -> None:
    from wam_ros.cli import main

    out = tmp_path / "cli_ckpt"
    assert main(["train", "--data", str(data), "--config", "tiny", "--out", str(out),
                 "--steps", "2", "--batch-size", "2", "--quiet"]) == 0
    assert (out / "model.safetensors").is_file()
    assert main(["train", "--data", str(data), "--config", "nope", "--out",
                 str(tmp_path / "x"), "--quiet"]) == 1
    # several datasets of the robot as one (one per task); another robot's is refused
    more = make_synthetic_dataset(tmp_path / "more", RobotSpec.load("cobot_magic"),
                                  n_episodes=2, length=40, seed=5)
    both = tmp_path / "both_ckpt"
    assert main(["train", "--data", str(data), "--data", str(more), "--config", "tiny",
                 "--out", str(both), "--steps", "2", "--batch-size", "2", "--quiet"]) == 0
    recorded = yaml.safe_load((both / "config.yaml").read_text())["info"]["data"]
    assert str(data) in recorded and str(more) in recorded
    other = make_synthetic_dataset(tmp_path / "g1", RobotSpec.load("agibot_g1"),
                                   n_episodes=2, length=40)
    assert main(["train", "--data", str(data), "--data", str(other), "--config", "tiny",
                 "--out", str(tmp_path / "y"), "--quiet"]) == 1


def test_object_head_learns_the_recorded_object_poses(tmp_path) -> None:
    """train.object_loss: a head on the observation tokens learns the object poses a simulated
    dataset records (here the goal blob's image position); the checkpoint still loads and
    plans; a dataset without poses is refused with a clear error."""
    spec = RobotSpec.load("cobot_magic")
    data = make_synthetic_dataset(tmp_path / "data", spec, n_episodes=12, length=40,
                                  objects=True)
    model_cfg, train_cfg = load_config("tiny")
    train_cfg.steps, train_cfg.batch_size, train_cfg.val_every = 200, 12, 200
    train_cfg.val_fraction = 0.25
    result = train(data, (model_cfg, train_cfg), tmp_path / "ckpt", object_loss=1.0,
                   progress=False, log=lambda *_: None)
    first, last = result["history"][0], result["history"][-1]
    # normalised targets: 1 is predicting their mean; validation episodes never trained on
    assert first["object"] > 0.3 and last["object"] < 0.25 * first["object"]
    cfg, tcfg = read_checkpoint_config(tmp_path / "ckpt")
    assert cfg.object_dim == 5 and tcfg.object_loss == 1.0
    policy = load_policy(tmp_path / "ckpt")
    chunk = policy.infer(fake_observation("cobot_magic", cfg.image_size, 0))
    assert np.all(np.isfinite(chunk.actions))
    plain = make_synthetic_dataset(tmp_path / "plain", spec, n_episodes=2, length=20)
    with pytest.raises(ConfigError, match="records no object poses"):
        train(plain, "tiny", tmp_path / "x", object_loss=1.0, progress=False,
              log=lambda *_: None)


@pytest.mark.parametrize("memory", ["kv", "ttt"])
@pytest.mark.parametrize("mode", ["joint", "fast", "two_stage"])
def test_trained_policy_predicts_demonstrated_actions(trained, data, memory, mode) -> None:
    """Runtime and training agree (normalisation, delta reference, gripper convention, flow
    direction, decoding as the decoder node does it): on
    demonstrations the trained policy's chunks are far closer to the demonstrated actions than
    holding still (an untrained model is worse than holding still: ~1.3x; 400 steps: ~0.45x)."""
    from wam_ros.core.decoding import ChunkDecoder
    from wam_ros.core.types import Observation
    from wam_ros.data.dataset_reader import EpisodeReader

    spec = RobotSpec.load("cobot_magic")
    decoder = ChunkDecoder(spec)  # what the decoder node runs: grippers absolute, joints delta
    reader = EpisodeReader(data)
    policy = load_policy(trained["checkpoint"], memory=memory, mode=mode)
    h = policy.meta.horizon
    err_policy, err_hold = [], []
    for ep in range(3):
        frames = reader.episode(ep)
        policy.reset()
        for t in range(0, reader.length(ep) - h, h):
            obs = Observation(stamp=float(frames["stamp"][t]),
                              images={c: frames[f"image.{c}"][t] for c in spec.camera_names},
                              joint_positions=spec.action_to_joint(frames["state"][t]),
                              task=reader.task(ep))
            chunk = policy.infer(obs)
            predicted = spec.joint_to_action(decoder.decode(chunk).actions)
            target = frames["action"][t:t + h]
            err_policy.append(np.abs(predicted - target).mean())
            err_hold.append(np.abs(frames["state"][t] - target).mean())
    assert np.mean(err_policy) < 0.65 * np.mean(err_hold), (np.mean(err_policy),
                                                            np.mean(err_hold))
