"""Training curves (model/curves.py): history.csv rows per validation, a PNG, resume keeps the
rows up to the resumed step."""

from __future__ import annotations

import csv

import pytest

from wam_ros.model.curves import TrainCurves


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_rows_hold_mean_training_losses_and_validation(tmp_path) -> None:
    curves = TrainCurves(tmp_path)
    curves.validation(0, 1e-4, {"latent_kv": 1.0, "action_kv": 2.0})
    for value in (1.0, 3.0):
        curves.add_step({"latent": value, "action": 2 * value})
    curves.validation(2, 5e-4, {"latent_kv": 0.5, "action_kv": 0.25})
    rows = _rows(tmp_path / "history.csv")
    assert [r["step"] for r in rows] == ["0", "2"]
    assert rows[0]["train_latent"] == ""
    assert float(rows[1]["train_latent"]) == pytest.approx(2.0)
    assert float(rows[1]["train_action"]) == pytest.approx(4.0)
    assert float(rows[1]["val_action_kv"]) == pytest.approx(0.25)
    assert float(rows[1]["lr"]) == pytest.approx(5e-4)
    assert float(rows[1]["steps_per_s"]) > 0
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_resume_keeps_the_rows_up_to_its_step(tmp_path) -> None:
    curves = TrainCurves(tmp_path)
    for step in (0, 10, 20):
        curves.add_step({"latent": 1.0, "action": 1.0})
        curves.validation(step, 1e-4, {"latent_kv": 1.0})
    resumed = TrainCurves(tmp_path, resume_step=10)
    resumed.add_step({"latent": 0.5, "action": 0.5})
    resumed.validation(20, 1e-4, {"latent_kv": 0.5})
    rows = _rows(tmp_path / "history.csv")
    assert [r["step"] for r in rows] == ["0", "10", "20"]
    assert float(rows[2]["val_latent_kv"]) == pytest.approx(0.5)
