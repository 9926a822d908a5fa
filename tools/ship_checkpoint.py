"""Copy what a deployed checkpoint needs (no optimiser state, no training history) into the
package's checkpoints/ folder, and refuse if it would exceed the size budget.

    python tools/ship_checkpoint.py ckpt/cobot_magic wam_ros/checkpoints/cobot_magic
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

# No ONNX export: its graphs repeat the weights (about 3x the size); `wam-ros demo` / `eval`
# export into a temporary copy when the onnxruntime backend asks for it.
KEEP = ("config.yaml", "model.safetensors", "stats.safetensors", "latent_decoder")
BUDGET_MB = 25.0


def main(src: str, dst: str) -> int:
    source, target = Path(src), Path(dst)
    if not (source / "config.yaml").is_file():
        print(f"error: {source} is not a checkpoint (no config.yaml)")
        return 2
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in KEEP:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, target / name)
        elif path.is_file():
            shutil.copy2(path, target / name)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file()) / 2**20
    print(f"{target}: {size:.1f} MB")
    if size > BUDGET_MB:
        print(f"error: over the {BUDGET_MB:g} MB budget")
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
