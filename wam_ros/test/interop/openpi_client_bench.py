"""Run in the openpi side environment (tools/openpi_venv.sh) by `wam-ros bench remote`:
openpi-client's round trip against a server, above the server's own compute.

    python openpi_client_bench.py PORT N WARMUP IMAGE_SIZE OUT.json

Each request: {"images": {cam_high, cam_left_wrist, cam_right_wrist: (S, S, 3) uint8},
"state": (14,) float32, "prompt"}; overhead = the time WebsocketClientPolicy.infer takes
minus the server's reported server_timing.infer_ms. OUT.json: {"overhead_ms": [...]}."""

import json
import sys
import time

import numpy as np
from openpi_client.websocket_client_policy import WebsocketClientPolicy


def main() -> int:
    port, n, warmup, size, out = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                  int(sys.argv[4]), sys.argv[5])
    client = WebsocketClientPolicy(host="127.0.0.1", port=port)
    rng = np.random.default_rng(0)
    images = {c: rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
              for c in ("cam_high", "cam_left_wrist", "cam_right_wrist")}
    state = np.zeros(14, np.float32)
    overhead = []
    for i in range(warmup + n):
        t0 = time.perf_counter()
        answer = client.infer({"images": images, "state": state, "prompt": "bench"})
        elapsed = time.perf_counter() - t0
        if i >= warmup:
            overhead.append(elapsed * 1e3 - float(answer["server_timing"]["infer_ms"]))
    with open(out, "w") as f:
        json.dump({"overhead_ms": overhead}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
