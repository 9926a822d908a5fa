"""`wam-ros serve`: a policy behind the openpi websocket protocol (ROS-free).

    server = PolicyServer(factory, metadata, host="127.0.0.1", port=8000)
    server.serve_forever()              # or: with server.in_thread() as port: ...

Each connection gets its own policy from `factory()` (one policy memory per connection: two
robots, or a robot and a test, never share a KV cache or TTT state); the connection first
receives `metadata` (msgpack map), then each binary request is answered by one binary response.
A request is a map; its `endpoint` field (DreamZero's convention; absent: infer) says what to do:
  infer   images {camera: (H, W, 3) or (3, H, W) uint8}, state (A,) in the action layout with
          grippers normalised 0..1, prompt (str), stamp (seconds; absent: the server's
          monotonic clock) -> {"actions": (H, A) float32 absolute targets, same convention,
          "dt": s, "server_timing": {"infer_ms": ...}}: the policy's chunk decoded exactly as
          the decoder node would (core.decoding.ChunkDecoder: deltas, grippers, latents)
  reset   the connection's policy starts a new episode (memory cleared) -> {"reset": True}
A failing request is answered with its traceback as a text message, as openpi's server does;
unlike openpi's, the connection stays open (a bad request does not end the session).
Inference runs on a worker thread, so the event loop keeps serving other connections.
`/healthz` answers 200 over plain HTTP. With an API key, a connection must send
"Authorization: Api-Key <key>" (openpi-client's header) or is refused with 401.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np

from wam_ros.core.decoding import ChunkDecoder
from wam_ros.core.robot import RobotSpec
from wam_ros.core.types import ActionSpace, Chunk, Observation
from wam_ros.runtime.msgpack_numpy import packb, unpackb


class ServedPolicy(Protocol):
    def infer(self, obs: Observation) -> Chunk: ...
    def reset(self) -> None: ...


def policy_metadata(meta: Any, robot: RobotSpec) -> dict[str, Any]:
    """What `wam-ros serve` announces for a runtime.PolicyMeta: everything a client needs to
    build requests and read chunks (config/servers/wam_ros.yaml reads it)."""
    return {"server": "wam_ros", "protocol": "openpi-websocket-msgpack",
            "robot": robot.name, "cameras": list(meta.camera_names),
            "image_size": [int(v) for v in meta.image_size], "image_layout": "hwc",
            "state_key": "state", "state_layout": list(robot.action_layout),
            "action_key": "actions", "action_layout": list(robot.action_layout),
            "action_space": "absolute", "gripper": {"closed": 0.0, "open": 1.0},
            "dt": float(meta.dt), "horizon": int(meta.horizon),
            "endpoints": ["infer", "reset"], "checkpoint": str(meta.checkpoint),
            "backend": str(meta.backend), "memory": str(meta.memory), "mode": str(meta.mode)}


def absolute_actions(chunk: Chunk, robot: RobotSpec, decoder: ChunkDecoder | None = None
                     ) -> np.ndarray:
    """(H, A) absolute targets in the action convention (grippers 0..1) of any policy chunk,
    decoded as the decoder node decodes it (in a JOINT_DELTA chunk the grippers are absolute
    openings; a LATENT chunk needs the checkpoint's latent decoder)."""
    if chunk.space == ActionSpace.JOINT_ABSOLUTE and decoder is None:
        return np.asarray(chunk.actions, np.float32)
    decoded = (decoder or ChunkDecoder(robot)).decode(chunk)
    return robot.joint_to_action(decoded.actions).astype(np.float32)


class PolicyServer:
    def __init__(self, factory: Callable[[], ServedPolicy], metadata: dict[str, Any],
                 robot: RobotSpec, *, host: str = "127.0.0.1", port: int = 8000,
                 api_key: str = "", extra_latency_s: float = 0.0,
                 decoder: ChunkDecoder | None = None,
                 log: Callable[[str], None] = print) -> None:
        """extra_latency_s: each inference answers this much later (a slower model's
        latency, for benchmarks). decoder: how chunks become absolute targets (None: the
        default ChunkDecoder; chunks already absolute pass unchanged)."""
        self.factory, self.metadata, self.robot = factory, dict(metadata), robot
        self.decoder = decoder
        self.host, self.port, self.api_key = host, port, api_key
        self.extra_latency_s = float(extra_latency_s)
        self.log = log
        self.bound_port: int | None = None
        self.connections = 0
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- protocol --------------------------------------------------------------------
    def _observation(self, req: dict, stamp: float) -> Observation:
        images = req.get("images")
        if not isinstance(images, dict):
            raise ValueError("request field 'images' must be a map camera -> (H, W, 3) uint8; "
                             f"got {type(images).__name__}")
        imgs = {}
        for name, sent in images.items():
            img = np.asarray(sent)
            if img.ndim == 3 and img.shape[0] == 3 and img.shape[2] != 3:
                img = img.transpose(1, 2, 0)  # CHW (openpi's ALOHA convention)
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f"images/{name}: {img.shape} {img.dtype}; expected (H, W, 3) "
                                 "uint8")
            imgs[str(name)] = self._resize(np.ascontiguousarray(img))
        state = np.asarray(req.get("state", ()), np.float64)
        if state.shape != (self.robot.action_dim,) or not np.all(np.isfinite(state)):
            raise ValueError(f"state: {state.shape}; expected ({self.robot.action_dim},) finite "
                             f"values in the layout {list(self.robot.action_layout)}")
        return Observation(float(req.get("stamp", stamp)), imgs,
                           self.robot.action_to_joint(state), task=str(req.get("prompt", "")))

    def _resize(self, img: np.ndarray) -> np.ndarray:
        from wam_ros.core.image import prepare_image

        h, w = self.metadata["image_size"]
        return prepare_image(img, int(h), int(w), "center_crop")

    def _infer(self, policy: ServedPolicy, req: dict, received: float) -> dict[str, Any]:
        obs = self._observation(req, received)
        t0 = time.perf_counter()
        chunk = policy.infer(obs)
        infer_s = time.perf_counter() - t0
        if self.extra_latency_s > 0:
            time.sleep(max(0.0, self.extra_latency_s - (time.perf_counter() - t0)))
        actions = absolute_actions(chunk, self.robot, self.decoder)
        return {"actions": actions, "dt": float(chunk.dt),
                "server_timing": {"infer_ms": infer_s * 1e3}}

    async def _handler(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        self.connections += 1
        peer = ws.remote_address
        policy = await asyncio.to_thread(self.factory)
        self.log(f"[serve] connection from {peer}: new policy memory")
        try:
            await ws.send(packb(self.metadata))
            while True:
                message = await ws.recv()
                received = time.monotonic()
                try:
                    if not isinstance(message, bytes):
                        raise ValueError("requests are binary msgpack maps; got a text message")
                    req = unpackb(message)
                    if not isinstance(req, dict):
                        raise ValueError(f"a request is a map; got {type(req).__name__}")
                    endpoint = req.get("endpoint", "infer")
                    if endpoint == "reset":
                        await asyncio.to_thread(policy.reset)
                        answer: dict[str, Any] = {"reset": True}
                    elif endpoint == "infer":
                        answer = await asyncio.to_thread(self._infer, policy, req, received)
                    else:
                        raise ValueError(f"endpoint {endpoint!r}; allowed: infer, reset")
                except Exception:
                    await ws.send(traceback.format_exc())
                    continue
                await ws.send(packb(answer))
        except ConnectionClosed:
            pass
        finally:
            self.log(f"[serve] connection from {peer} closed")

    def _process_request(self, connection: Any, request: Any) -> Any:
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        if self.api_key:
            if request.headers.get("Authorization", "") != f"Api-Key {self.api_key}":
                return connection.respond(http.HTTPStatus.UNAUTHORIZED, "API key required\n")
        return None

    async def run(self, ready: Callable[[int], None] | None = None) -> None:
        from websockets.asyncio.server import serve

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self._handler, self.host, self.port, compression=None, max_size=None,
                         process_request=self._process_request, ping_interval=None) as server:
            self.bound_port = int(next(iter(server.sockets)).getsockname()[1])
            if ready is not None:
                ready(self.bound_port)
            await self._stop.wait()

    def serve_forever(self, ready: Callable[[int], None] | None = None) -> None:
        asyncio.run(self.run(ready))

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    @contextlib.contextmanager
    def in_thread(self, timeout_s: float = 30.0) -> Iterator[int]:
        """Serve on a daemon thread while the block runs; yields the bound port."""
        started = threading.Event()
        errors: list[BaseException] = []

        def main() -> None:
            try:
                self.serve_forever(lambda _port: started.set())
            except BaseException as exc:  # reported to the caller below
                errors.append(exc)
                started.set()

        thread = threading.Thread(target=main, name="wam_serve", daemon=True)
        thread.start()
        if not started.wait(timeout_s) or errors:
            raise RuntimeError(f"policy server did not start: {errors[0] if errors else ''}")
        try:
            assert self.bound_port is not None
            yield self.bound_port
        finally:
            self.stop()
            thread.join(timeout_s)


def checkpoint_server(checkpoint: str, robot: str | None = None, *, backend: str = "torch",
                      memory: str = "kv", mode: str = "joint", flow_steps: int | None = 4,
                      seed: int = 0, threads: int = 0, device: str = "cpu",
                      **server_kw: Any) -> PolicyServer:
    """A PolicyServer around a checkpoint: the backend (weights, sessions) is loaded once and
    shared; each connection gets its own Policy (memory) on it."""
    from wam_ros.model.checkpoint import load_stats, read_checkpoint_config
    from wam_ros.runtime.backends import make_backend
    from wam_ros.runtime.policy import Policy

    cfg, _ = read_checkpoint_config(checkpoint)
    spec = RobotSpec.load(robot or cfg.robot)
    latent = None
    if cfg.action_space == "latent":  # decoded here, as the decoder node would
        from wam_ros.model.latent_decoder import LatentActionDecoder

        latent = LatentActionDecoder.load(checkpoint).decode
    be = make_backend(backend, checkpoint, device, threads=threads)
    stats = load_stats(checkpoint)
    lock = threading.Lock()  # backends are shared; one inference at a time keeps them simple

    class _Locked:
        def __init__(self) -> None:
            self.policy = Policy(be, cfg, stats, memory=memory, mode=mode,
                                 flow_steps=flow_steps, seed=seed, checkpoint=str(checkpoint))

        def infer(self, obs: Observation) -> Chunk:
            with lock:
                return self.policy.infer(obs)

        def reset(self) -> None:
            self.policy.reset()

    meta = _Locked().policy.meta
    return PolicyServer(_Locked, policy_metadata(meta, spec), spec,
                        decoder=ChunkDecoder(spec, latent_decoder=latent), **server_kw)


__all__ = ["PolicyServer", "ServedPolicy", "absolute_actions", "checkpoint_server",
           "policy_metadata"]
