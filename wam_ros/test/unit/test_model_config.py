"""Model/train configuration: presets load, bad values fail with file, key, value, choices."""

from __future__ import annotations

import pytest
import yaml

from wam_ros.core.config import ConfigError
from wam_ros.model.config import load_config, with_robot


def _write(tmp_path, doc) -> str:
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_presets() -> None:
    tiny, ttrain = load_config("tiny")
    default, _ = load_config("default")
    assert tiny.encoder == "conv" and tiny.d_model == 32
    assert default.encoder == "efficientnet_lite0" and default.horizon == 16
    assert default.flow_steps == 4 and default.image_size == (224, 224)
    assert ttrain.steps > 0


def test_yaml_overrides_a_preset(tmp_path) -> None:
    m, t = load_config(_write(tmp_path, {"base": "tiny", "model": {"d_model": 48},
                                         "train": {"steps": 7}}))
    assert m.d_model == 48 and m.encoder == "conv" and t.steps == 7


@pytest.mark.parametrize("doc, key, fragment", [
    ({"model": {"encoder": "resnet"}}, "model.encoder",
     "allowed: conv, conv_keypoints, efficientnet_lite0"),
    ({"model": {"action_space": "cartesian"}}, "model.action_space",
     "allowed: absolute, delta, latent"),
    ({"model": {"d_model": 30, "n_heads": 4}}, "model.n_heads", "divisor of d_model=30"),
    ({"model": {"horizon": 0}}, "model.horizon", ">= 1"),
    ({"model": {"memory_window": 1}}, "model.memory_window", ">= 2"),
    ({"model": {"p_fast": 0.9}}, "model.p_fast", "<= 1 - p_clean_latent"),
    ({"model": {"flow_steps": "four"}}, "model.flow_steps", "expected an integer"),
    ({"model": {"encoder_trainable": True}}, "model.encoder_trainable",
     "unless encoder is one of conv, conv_keypoints"),
    ({"model": {"d_modle": 64}}, "model.d_modle", "did you mean 'd_model'"),
    ({"train": {"lr": -1.0}}, "train.lr", "> 0"),
    ({"train": {"val_fraction": 1.5}}, "train.val_fraction", "between 0 and 1"),
    ({"base": "huge"}, "base", "allowed: tiny, default"),
    ({"optimizer": {}}, "optimizer", "unknown key"),
])
def test_bad_values_name_file_key_value_and_choices(tmp_path, doc, key, fragment) -> None:
    path = _write(tmp_path, doc)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert msg.startswith(path) and f": {key}:" in msg and fragment in msg, msg


def test_unknown_preset_and_robot_interface() -> None:
    with pytest.raises(ConfigError, match="allowed: tiny, default"):
        load_config("medium")
    m, _ = load_config("tiny")
    with pytest.raises(ConfigError, match="action_layout"):
        with_robot(m, robot="x", action_layout=(), camera_names=("a",), dt=0.1)
    with pytest.raises(ConfigError, match="dt"):
        with_robot(m, robot="x", action_layout=("j",), camera_names=("a",), dt=0.0)
