"""Training curves: `history.csv` and `curves.png` in the run directory, rewritten (atomically)
at every validation, so a person can watch a run with any CSV tool or image viewer.

history.csv: one row per validation: step, learning rate, the mean training loss of each head
since the previous row (train_latent, train_action, train_object where trained, train_total),
each validation loss (val_latent_kv, val_action_kv, val_latent_ttt, val_action_ttt,
val_object), seconds since the start and training steps per second since the previous row.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from pathlib import Path

HEADS = ("latent", "action", "object", "total")


class TrainCurves:
    def __init__(self, out: str | Path, resume_step: int | None = None) -> None:
        self.csv_path = Path(out) / "history.csv"
        self.png_path = Path(out) / "curves.png"
        self.rows: list[dict[str, float]] = []
        if resume_step is not None and self.csv_path.is_file():  # keep the run's past
            with open(self.csv_path, newline="") as f:
                self.rows = [{k: float(v) for k, v in r.items() if v != ""}
                             for r in csv.DictReader(f) if float(r["step"]) <= resume_step]
        self._sums: dict[str, float] = {}
        self._count = 0
        self._t0 = time.perf_counter()
        self._last = (self._t0, resume_step or 0)
        self._offset = self.rows[-1].get("time_s", 0.0) if self.rows else 0.0

    def add_step(self, losses: dict[str, float]) -> None:
        """The training losses of one step (head -> value)."""
        for head, value in losses.items():
            self._sums[head] = self._sums.get(head, 0.0) + float(value)
        self._count += 1

    def validation(self, step: int, lr: float, val: dict[str, float]) -> None:
        """Close a row at a validation and rewrite history.csv and curves.png."""
        now = time.perf_counter()
        row: dict[str, float] = {"step": float(step), "lr": float(lr)}
        for head, total in self._sums.items():
            row[f"train_{head}"] = total / max(1, self._count)
        row.update({f"val_{k}": float(v) for k, v in val.items()})
        row["time_s"] = self._offset + now - self._t0
        last_t, last_step = self._last
        if step > last_step and now > last_t:
            row["steps_per_s"] = (step - last_step) / (now - last_t)
        self._last = (now, step)
        self._sums, self._count = {}, 0
        self.rows.append(row)
        self.write()

    def columns(self) -> list[str]:
        cols: list[str] = ["step", "lr"]
        for row in self.rows:
            cols += [k for k in row if k not in cols and k not in ("time_s", "steps_per_s")]
        return [*cols, "time_s", "steps_per_s"]

    def write(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns(), lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: (int(v) if k == "step" else f"{v:.6g}") for k, v in row.items()})
        tmp = self.csv_path.with_suffix(".csv.tmp")
        tmp.write_text(buf.getvalue())
        os.replace(tmp, self.csv_path)
        plot_curves(self.rows, self.png_path)


def plot_curves(rows: list[dict[str, float]], png: Path) -> None:
    """Loss curves (log scale) and the learning rate against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(8, 6), sharex=True,
                                    gridspec_kw={"height_ratios": [3, 1]})
    keys = [k for k in dict.fromkeys(k for r in rows for k in r)
            if k.startswith(("train_", "val_")) and k != "train_total"]
    for key in keys:
        pts = [(r["step"], r[key]) for r in rows
               if key in r and math.isfinite(r[key]) and r[key] > 0]
        if pts:
            xs, ys = zip(*pts)
            style = "-" if key.startswith("train_") else "--o"
            ax.plot(xs, ys, style, label=key, markersize=3)
    ax.set_yscale("log")
    ax.set_ylabel("loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    ax.set_title("training (solid) and validation (dashed) losses")
    ax_lr.plot([r["step"] for r in rows], [r["lr"] for r in rows], "-")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    ax_lr.grid(True, alpha=0.3)
    fig.tight_layout()
    tmp = png.with_name(png.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, png)


__all__ = ["TrainCurves", "plot_curves"]
