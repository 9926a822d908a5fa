"""`wam-ros serve CHECKPOINT --port P`: our WAM behind the openpi websocket protocol
(runtime/serve.py), so the node graph can run on the robot while the model runs on a GPU box
(backend `remote`, config/servers/wam_ros.yaml), and openpi's own client can drive it."""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

from wam_ros.core.settings import LOCAL_BACKENDS, MEMORIES, MODES, PolicySettings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a checkpoint over the openpi websocket protocol")
    p.add_argument("checkpoint", help="checkpoint directory ('' or 'default': the shipped "
                                      "default of --robot)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (0: any free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: this machine only; 0.0.0.0: every "
                        "interface, for a robot on the network)")
    p.add_argument("--robot", default="", help="robot (default: the checkpoint's)")
    p.add_argument("--backend", default=PolicySettings.backend, choices=LOCAL_BACKENDS)
    p.add_argument("--memory", default=PolicySettings.memory, choices=MEMORIES)
    p.add_argument("--mode", default=PolicySettings.mode, choices=MODES)
    p.add_argument("--flow-steps", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: default)")
    p.add_argument("--device", default="cpu", help="cpu | cuda (torch; onnxruntime: its CUDA "
                                                   "provider; tensorrt always runs on the GPU)")
    p.add_argument("--api-key-env", default="",
                   help="environment variable holding an API key clients must send "
                        "(Authorization: Api-Key <key>); empty: none")
    p.add_argument("--nice", type=int, default=0,
                   help="raise the server's nice value (a server sharing the robot's computer "
                        "must not starve the control path; the policy node's inference runs at "
                        "10)")
    p.add_argument("--extra-latency-ms", type=float, default=0.0,
                   help="answer each inference this much later (a slower model's latency, "
                        "for benchmarks)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wam_ros.core.config import ConfigError
    from wam_ros.paths import resolve_checkpoint
    from wam_ros.runtime.serve import checkpoint_server

    if args.nice > 0:
        os.nice(args.nice)
    api_key = ""
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env, "")
        if not api_key:
            print(f"error: --api-key-env {args.api_key_env}: the variable is not set")
            return 2
    try:
        ckpt_arg = "" if args.checkpoint in ("", "default") else args.checkpoint
        if not ckpt_arg and not args.robot:
            raise ConfigError("checkpoint 'default' needs --robot")
        checkpoint = resolve_checkpoint(ckpt_arg, args.robot or "")
        if args.backend in ("onnxruntime", "tensorrt") and not (checkpoint / "onnx").is_dir():
            raise ConfigError(f"{checkpoint}: no ONNX export; run `wam-ros export {checkpoint} "
                              "--format onnx` or serve with --backend torch")
        server = checkpoint_server(str(checkpoint), args.robot or None, backend=args.backend,
                                   memory=args.memory, mode=args.mode,
                                   flow_steps=args.flow_steps, seed=args.seed,
                                   threads=args.threads, device=args.device,
                                   host=args.host, port=args.port,
                                   api_key=api_key,
                                   extra_latency_s=args.extra_latency_ms * 1e-3)
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}")
        return 2
    meta = server.metadata

    def ready(port: int) -> None:
        # one parseable line: tests and `wam-ros demo --served` read the port from it
        print(f"[serve] {checkpoint.name} ({meta['robot']}, {len(meta['cameras'])} cameras "
              f"{meta['image_size'][0]}x{meta['image_size'][1]}, {meta['horizon']} actions x "
              f"{meta['dt'] * 1e3:.0f} ms) listening on ws://{args.host}:{port}", flush=True)

    try:
        server.serve_forever(ready)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}")
        return 2
    return 0


class ServeProcess:
    """`wam-ros serve` as a child process on a free loopback port (demo, bench, tests):

        with ServeProcess(checkpoint, workdir / "serve.log", backend="onnxruntime") as url:
            ...  # ws://127.0.0.1:PORT
    """

    LINE = re.compile(r"listening on (ws://[^\s]+)")

    def __init__(self, checkpoint: str | Path, log_path: str | Path, *, backend: str = "torch",
                 memory: str = "kv", mode: str = "joint", extra_latency_ms: float = 0.0,
                 nice: int = 0, extra: tuple[str, ...] = (),
                 startup_timeout_s: float = 180.0) -> None:
        from wam_ros.testing.process import NodeProcess, python_module_cmd

        self.log_path = Path(log_path)
        self.proc = NodeProcess(python_module_cmd(
            "wam_ros.cli", "serve", str(checkpoint), "--port", "0", "--backend", backend,
            "--memory", memory, "--mode", mode, "--extra-latency-ms", str(extra_latency_ms),
            "--nice", str(nice), *extra), env={"PYTHONUNBUFFERED": "1"},
            log_path=str(self.log_path))
        deadline = time.monotonic() + startup_timeout_s
        self.url = ""
        while not self.url:
            match = self.LINE.search(self.proc.output())
            if match:
                self.url = match.group(1)
            elif not self.proc.alive() or time.monotonic() > deadline:
                out = self.proc.output()
                self.proc.stop()
                raise RuntimeError(f"wam-ros serve did not start:\n{out}")
            else:
                time.sleep(0.1)

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.proc.stop()
