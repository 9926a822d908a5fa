"""Runs LimitEnforcer, the timeline's sampling and the command pipeline's step and preview on
seeded random inputs (both robots) and saves every output to an .npz: run it under two
versions of the package and compare the files (an experiment, not part of the package).

    python same_commands.py out.npz              # with the package under test importable
    python same_commands.py --compare a.npz b.npz
"""

from __future__ import annotations

import sys

import numpy as np


def record(path: str) -> None:
    from wam_ros.core.pipeline import CommandPipeline, PipelineConfig
    from wam_ros.core.robot import RobotSpec
    from wam_ros.core.safety import SafetyConfig
    from wam_ros.core.smoothing import LimitEnforcer
    from wam_ros.core.types import Chunk

    out = {}
    for robot in ("cobot_magic", "agibot_g1"):
        spec = RobotSpec.load(robot)
        lo, hi = spec.limits_array("lower"), spec.limits_array("upper")
        rng = np.random.default_rng(1)
        # the enforcer alone: targets anywhere (beyond the limits too), early (shorter)
        # steps, brakes, live limit changes, resets from outside the limits
        e = LimitEnforcer.from_spec(spec)
        e.reset(rng.uniform(lo, hi))
        rows = []
        for _ in range(20000):
            r = rng.random()
            if r < 0.01:
                e.set_limits(spec.limits_array("velocity") * rng.uniform(0.05, 1.0),
                             spec.limits_array("acceleration") * rng.uniform(0.05, 1.0))
            elif r < 0.012:
                e.reset(rng.uniform(lo - 0.1, hi + 0.1), rng.normal(size=lo.shape))
            dt = None if rng.random() < 0.8 else float(rng.uniform(1e-4, e.dt))
            if rng.random() < 0.05:
                c = e.brake(dt)
            else:
                span = rng.choice([0.001, 0.05, 0.5, 3.0])
                c = e.step(rng.uniform(lo - span, hi + span) if rng.random() < 0.3
                           else e.position + rng.normal(scale=span, size=lo.shape), dt)
            rows.append(np.concatenate([c, e.velocity_cmd]))
        out[f"{robot}.enforcer"] = np.array(rows)
        # the pipeline: random chunks (some beyond the limits), every tick's command and a
        # preview of 0-7 ticks
        pipe = CommandPipeline(spec, PipelineConfig(safety=SafetyConfig(chunk_timeout_s=0.5)))
        now, stamp, m = 0.0, 0.0, spec.home_vector()
        cmds, previews = [], []
        for _ in range(6000):
            now += pipe.dt
            if rng.random() < 0.05:
                stamp = max(stamp + 1e-3, now - rng.uniform(0.0, 0.3))
                h = int(rng.integers(1, 60))
                base = rng.uniform(lo - 0.1, hi + 0.1) if rng.random() < 0.2 else m
                acts = base + np.cumsum(rng.normal(scale=0.02, size=(h, spec.action_dim)), 0)
                pipe.offer_chunk(Chunk(stamp, acts.astype(np.float32), spec.action_dt), now)
            o = pipe.step(now, m)
            if o is None:
                continue
            m = o.positions
            cmds.append(np.concatenate([o.positions, o.velocities]))
            p = pipe.preview(now, int(rng.integers(0, 8)))
            previews += [p.ravel(), np.array([p.shape[0]], float)]
        out[f"{robot}.commands"] = np.array(cmds)
        out[f"{robot}.previews"] = np.concatenate(previews)
    np.savez(path, **out)
    print({k: v.shape for k, v in out.items()})


def compare(a_path: str, b_path: str) -> int:
    a, b = np.load(a_path), np.load(b_path)
    differ = 0
    for k in a.files:
        x, y = a[k], b[k]
        bits = x.shape == y.shape and np.array_equal(x.view(np.uint64), y.view(np.uint64))
        differ += not bits
        print(f"{k:24s} {x.shape} {'bit-identical' if bits else 'DIFFERENT'}")
    return 1 if differ else 0


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    record(sys.argv[1])
