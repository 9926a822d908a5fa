"""Run in the openpi side environment (tools/openpi_venv.sh): a server built with openpi's own
`openpi_server.WebsocketPolicyServer` around a small policy in the openpi ALOHA convention.

    python openpi_server_small.py PORT

The policy checks the request as openpi's ALOHA policies take it (images/cam_* (3, 224, 224)
uint8, state (14,), prompt) and answers {"actions": (50, 14)}: the state it was sent plus
0.001 x step on every column; prompt "fail" raises (the server then sends its traceback and
closes the connection, as openpi's does)."""

import sys

import numpy as np
from openpi_client.base_policy import BasePolicy
from openpi_server import WebsocketPolicyServer


class SmallAlohaPolicy(BasePolicy):
    def infer(self, obs: dict) -> dict:
        if obs.get("prompt") == "fail":
            raise RuntimeError("small policy: asked to fail")
        for cam in ("cam_high", "cam_left_wrist", "cam_right_wrist"):
            img = obs["images"][cam]
            if img.shape != (3, 224, 224) or img.dtype != np.uint8:
                raise ValueError(f"images/{cam}: {img.shape} {img.dtype}")
        state = np.asarray(obs["state"], np.float32)
        if state.shape != (14,):
            raise ValueError(f"state: {state.shape}")
        steps = np.arange(50, dtype=np.float32)[:, None]
        return {"actions": state[None, :] + 0.001 * steps}


if __name__ == "__main__":
    WebsocketPolicyServer(SmallAlohaPolicy(), host="127.0.0.1", port=int(sys.argv[1]),
                          metadata={"policy": "small_aloha"}).serve_forever()
