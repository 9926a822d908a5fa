"""Run in the openpi side environment (tools/openpi_venv.sh): openpi's own client
(openpi_client.websocket_client_policy.WebsocketClientPolicy) drives a server.

    python openpi_client_drive.py PORT IN.npz OUT.npz [RESET_AT]

IN.npz holds the observations (arrays `images_<camera>` (N, H, W, 3) uint8, `state` (N, A),
`stamp` (N,), `prompt` (N,) str); each goes out as {"images": {...}, "state", "stamp",
"prompt"}; before observation RESET_AT a {"endpoint": "reset"} request goes out. OUT.npz
gets `actions` (N, H, A) and `metadata` (the server's metadata as JSON text). Nothing is
pickled either way (np.load with allow_pickle=False)."""

import json
import sys

import numpy as np
from openpi_client.websocket_client_policy import WebsocketClientPolicy


def main() -> int:
    port, src, dst = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    reset_at = int(sys.argv[4]) if len(sys.argv) > 4 else -1
    data = np.load(src, allow_pickle=False)
    cams = sorted(k[len("images_"):] for k in data.files if k.startswith("images_"))
    client = WebsocketClientPolicy(host="127.0.0.1", port=port)
    out = []
    for i in range(len(data["state"])):
        if i == reset_at:
            assert client.infer({"endpoint": "reset"}) == {"reset": True}
        answer = client.infer({"images": {c: data[f"images_{c}"][i] for c in cams},
                               "state": data["state"][i], "stamp": float(data["stamp"][i]),
                               "prompt": str(data["prompt"][i])})
        out.append(np.asarray(answer["actions"]))
    np.savez(dst, actions=np.stack(out),
             metadata=np.array(json.dumps(client.get_server_metadata())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
