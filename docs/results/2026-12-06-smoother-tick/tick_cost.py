"""CPU of one smoother control tick's computation in a loop (an experiment, not part of the
package): the pipeline's step, the preview of the next 5 ticks, and the messages for the
CobotMagic's four controllers (building them, not publishing). Prints ms per tick."""

from __future__ import annotations

import time

import numpy as np

from wam_ros.core.pipeline import CommandPipeline
from wam_ros.core.robot import RobotSpec
from wam_ros.core.types import Chunk
from wam_ros.nodes import conversions

spec = RobotSpec.load("cobot_magic")
pipe = CommandPipeline(spec)
now, m = 0.0, spec.home_vector()
pipe.step(now, m)
rng = np.random.default_rng(0)


def chunk(t: float) -> Chunk:
    acts = m + np.cumsum(rng.normal(scale=0.01, size=(30, spec.action_dim)), 0)
    return Chunk(t, acts.astype(np.float32), spec.action_dt)


pipe.offer_chunk(chunk(0.0), 0.0)
dt = pipe.dt
times = [conversions.to_duration(spec.trajectory_lead_s + k * dt) for k in range(6)]
outputs = [(c, [spec.action_layout.index(j) for j in c.joints]) for c in spec.controllers]
cost = {"step": 0.0, "preview": 0.0, "messages": 0.0}
n = 2000
for i in range(n):
    now += dt
    if i % 10 == 0:  # a fresh chunk every 10 ticks keeps the plan running
        pipe.offer_chunk(chunk(now), now)
    t0 = time.perf_counter()
    out = pipe.step(now, m)
    t1 = time.perf_counter()
    ahead = pipe.preview(now, 5)
    t2 = time.perf_counter()
    for c, idx in outputs:
        conversions.controller_command(c, out.positions[idx], times, ahead[:, idx],
                                       conversions.to_time(now), out.velocities[idx], dt)
    t3 = time.perf_counter()
    cost["step"] += t1 - t0
    cost["preview"] += t2 - t1
    cost["messages"] += t3 - t2
print(" ".join(f"{k} {v / n * 1e3:.3f}" for k, v in cost.items()),
      f"total {sum(cost.values()) / n * 1e3:.3f} ms per tick")
