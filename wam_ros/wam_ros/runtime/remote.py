"""Backend `remote`: a policy behind any server of the openpi websocket protocol (ROS-free).

    policy = RemotePolicy(ServerMapping.load("openpi_aloha"), RobotSpec.load("cobot_magic"),
                          "ws://gpu-box:8000", timeout_s=1.0, log=logger.warning)
    chunk = policy.infer(obs)   # a Chunk like the local WAM's: same runner, schedulers, decoder,
    policy.reset()              # smoother and safety downstream

The protocol (openpi's WebsocketPolicyServer; DreamZero's adds an `endpoint` field): on
connect the server sends its metadata (a msgpack map); then each binary message is one
request (a msgpack-numpy map) answered by one binary response, or by a text message holding
the server's traceback when it failed (openpi's server then closes the connection). Requests
and responses are built by the mapping (runtime/server_mapping.py, config/servers/*.yaml).
Payloads are msgpack-numpy only (runtime/msgpack_numpy.py): nothing is ever unpickled, which
is why LeRobot's own async transport (gRPC carrying pickles) is not supported.

Faults, each turned into an exception the chunk runner counts as a failed inference (no chunk:
the smoother runs out its plan and holds the arm), and logged once per kind through `log`:
- unreachable: one line naming the URL when it goes down, one when it is back; reconnection is
  tried at most every `backoff` seconds (doubling from 0.5 s up to 10 s); a call inside the
  wait fails at once;
- a traceback text: its last line is the kind (logged the first time), counted;
- slower than `timeout_s`: the call fails; the late answer is read and dropped before the next
  request goes out (the protocol has no request ids: answers come in order);
- a chunk of the wrong shape, with NaN or inf: refused, the message names field and shapes.
sai needs the model's internals (its flow steps) and is refused.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from wam_ros.core.robot import RobotSpec
from wam_ros.core.types import ActionSpace, Chunk, Observation
from wam_ros.runtime.msgpack_numpy import WireFormatError, packb, unpackb
from wam_ros.runtime.policy import PolicyMeta
from wam_ros.runtime.server_mapping import ResolvedMapping, ServerMapping

SAI_REFUSED = ("scheduler 'sai' needs the model's internals (it integrates part of the flow "
               "ahead on a surrogate context) and runs only on our WAM; backend 'remote' "
               "allows: sync, async")


class RemoteError(RuntimeError):
    """A remote inference that produced no chunk."""


class ServerUnreachable(RemoteError):
    pass


class ServerFailed(RemoteError):
    """The server answered with its traceback."""


class CallTimeout(RemoteError):
    pass


class ChunkRefused(RemoteError, ValueError):
    pass


class ServerConnection:
    """One websocket to the server, reconnecting with backoff; not thread-safe (the policy
    calls it from one worker thread)."""

    def __init__(self, url: str, *, api_key: str = "", connect_timeout_s: float = 2.0,
                 backoff_s: tuple[float, float] = (0.5, 10.0),
                 clock: Callable[[], float] = time.monotonic,
                 log: Callable[[str], None] = print) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"server_url {url!r}: expected ws://HOST:PORT or wss://HOST:PORT")
        self.url, self.api_key = url, api_key
        self.connect_timeout_s = connect_timeout_s
        self.backoff_min, self.backoff_max = backoff_s
        self.clock, self.log = clock, log
        self.ws: Any = None
        self.metadata: dict | None = None
        self.counters: Counter[str] = Counter()
        self._backoff = self.backoff_min
        self._next_try = -np.inf
        self._down = False  # the last attempt failed (logged once per outage)
        self._owed = 0  # answers of timed-out calls still to come on this socket

    @property
    def connected(self) -> bool:
        return self.ws is not None

    def connect(self) -> dict:
        """The metadata, connecting first if needed; ServerUnreachable inside the backoff
        wait or when the attempt fails."""
        if self.ws is not None:
            from websockets.protocol import State

            if self.ws.state is State.OPEN:
                return self.metadata or {}
            self.drop()  # closed by the server (openpi's closes after sending a traceback)
        now = self.clock()
        if now < self._next_try:
            raise ServerUnreachable(f"policy server {self.url} unreachable; next try in "
                                    f"{self._next_try - now:.1f} s")
        from websockets.sync.client import connect

        headers = {"Authorization": f"Api-Key {self.api_key}"} if self.api_key else None
        try:
            # no keep-alive pings: a server busy with a long inference answers none, and each
            # call has its own timeout
            ws = connect(self.url, compression=None, max_size=None, additional_headers=headers,
                         open_timeout=self.connect_timeout_s, ping_interval=None,
                         close_timeout=0.5)
            ws.__enter__()  # the connection is held open across calls; drop() closes it
            first = ws.recv(timeout=self.connect_timeout_s)
        except Exception as exc:  # refused, DNS, TLS, handshake, timeout: all "unreachable"
            self.counters["unreachable"] += 1
            self._next_try = self.clock() + self._backoff
            wait = self._backoff
            self._backoff = min(self._backoff * 2.0, self.backoff_max)
            if not self._down:
                self._down = True
                self.log(f"policy server {self.url} unreachable ({type(exc).__name__}: {exc}); "
                         f"the arm holds; reconnecting every {self.backoff_min:g}.."
                         f"{self.backoff_max:g} s")
            raise ServerUnreachable(f"policy server {self.url} unreachable "
                                    f"({type(exc).__name__}: {exc}); next try in "
                                    f"{wait:.1f} s") from None
        try:
            meta = unpackb(first) if isinstance(first, bytes) else None
        except WireFormatError:
            meta = None
        if not isinstance(meta, dict):
            ws.close()
            self._next_try = self.clock() + self._backoff
            raise ServerUnreachable(f"policy server {self.url}: the first message is not a "
                                    "metadata map (not an openpi-protocol server?)")
        self.ws, self.metadata, self._owed = ws, meta, 0
        self._backoff = self.backoff_min
        self.counters["connects"] += 1
        if self._down or self.counters["connects"] > 1:
            self.log(f"policy server {self.url} connected")
        self._down = False
        return meta

    def drop(self) -> None:
        if self.ws is not None:
            try:
                self.ws.close()
            except Exception:  # closing a dead socket: nothing left to do
                pass
        self.ws = None

    def call(self, request: dict, timeout_s: float) -> Any:
        """Send one request, return the decoded answer (RemoteError subclasses otherwise)."""
        from websockets.exceptions import ConnectionClosed

        self.connect()
        deadline = self.clock() + timeout_s
        try:
            while self._owed:  # answers to calls that timed out: read and drop them
                self.ws.recv(timeout=max(1e-3, deadline - self.clock()))
                self._owed -= 1
                self.counters["late_dropped"] += 1
            self.ws.send(packb(request))
            self._owed += 1
            answer = self.ws.recv(timeout=max(1e-3, deadline - self.clock()))
            self._owed -= 1
        except TimeoutError:
            self.counters["timeouts"] += 1
            raise CallTimeout(f"policy server {self.url}: no answer within {timeout_s:g} s; "
                              "holding (the late answer will be dropped)") from None
        except (ConnectionClosed, OSError) as exc:
            self.drop()
            self.counters["disconnects"] += 1
            raise ServerUnreachable(f"policy server {self.url}: connection lost "
                                    f"({type(exc).__name__}: {exc})") from None
        if isinstance(answer, str):
            return _TextAnswer(answer)
        try:
            return unpackb(answer)
        except WireFormatError as exc:
            self.counters["bad_payload"] += 1
            raise ChunkRefused(f"policy server {self.url}: {exc}") from None


class _TextAnswer(str):
    """A text frame: the server's traceback."""


def error_kind(text: str) -> str:
    """The kind of a server traceback: its last non-empty line (exception type and message),
    at most 160 characters."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "(empty error text)")[:160]


class RemotePolicy:
    """A ChunkPolicy (runtime.chunk_runner) whose model runs behind an openpi-protocol server."""

    def __init__(self, mapping: ServerMapping, robot: RobotSpec, url: str, *,
                 api_key: str = "", timeout_s: float = 1.0, connect_timeout_s: float = 2.0,
                 backoff_s: tuple[float, float] = (0.5, 10.0),
                 clock: Callable[[], float] = time.monotonic,
                 log: Callable[[str], None] = print) -> None:
        if not (np.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"server_timeout_s: got {timeout_s!r}; allowed: > 0 seconds")
        self.mapping, self.robot, self.url = mapping, robot, url
        self.timeout_s = timeout_s
        self.log = log
        self.conn = ServerConnection(url, api_key=api_key, connect_timeout_s=connect_timeout_s,
                                     backoff_s=backoff_s, clock=clock, log=log)
        self.errors: Counter[str] = Counter()  # server tracebacks by kind
        self.refused = 0  # chunks refused (shape, NaN)
        self.resolved: ResolvedMapping = mapping.resolve(robot, None)
        self._resolved_for: int = -1  # connects count the mapping was resolved for
        self.episode_id = 0
        self.chunk_index = 0
        self._session = ""
        self._reset_due = False
        self.reset()
        try:  # the server's metadata sizes `meta` when it is up; when not, one line says so
            self._ensure_connected()
        except RemoteError:
            pass

    # ---- ChunkPolicy ------------------------------------------------------------------
    @property
    def meta(self) -> PolicyMeta:
        r = self.resolved
        cams = tuple(c.camera for c in r.cameras)
        size = (r.cameras[0].height, r.cameras[0].width)
        return PolicyMeta(robot=self.robot.name, camera_names=cams, image_size=size,
                          action_space=ActionSpace.JOINT_ABSOLUTE,
                          action_names=tuple(self.robot.action_layout),
                          horizon=r.execute or r.horizon or 0, dt=r.dt,
                          action_dim=self.robot.action_dim, latent_action_dim=0,
                          memory="server", mode="server", flow_steps=0, backend="remote",
                          checkpoint=self.url)

    def reset(self) -> None:
        """New episode: a new session id; the server's reset (where the convention has one)
        goes out before the next request, from the thread that runs inference."""
        self.episode_id += 1
        self.chunk_index = 0
        self._session = uuid.uuid4().hex
        self._reset_due = True

    def infer(self, obs: Observation, prefix_s: float = 0.0) -> Chunk:
        t0 = time.perf_counter()
        self._ensure_connected()
        joints = np.asarray(obs.joint_positions, np.float64)
        if joints.shape != (self.robot.action_dim,) or not np.all(np.isfinite(joints)):
            raise ValueError(f"joint_positions {joints.shape} (finite: "
                             f"{bool(np.all(np.isfinite(joints)))}); expected "
                             f"({self.robot.action_dim},) finite values")
        state_act = self.robot.joint_to_action(joints)
        r = self.resolved
        if self._reset_due:
            reset = r.reset_request(self._session)
            if reset is not None:
                self._answer(reset)
            self._reset_due = False
        t_send = time.perf_counter()
        answer = self._answer(r.request(obs, state_act, self._session))
        round_trip = time.perf_counter() - t_send
        try:
            actions = r.actions(answer, state_act, where=f"policy server {self.url}")
        except ValueError as exc:
            self.refused += 1
            raise ChunkRefused(str(exc)) from None
        extras = {"round_trip_s": round_trip}
        timing = answer.get("server_timing") if isinstance(answer, dict) else None
        if isinstance(timing, dict) and "infer_ms" in timing:
            extras["server_infer_s"] = float(timing["infer_ms"]) * 1e-3
        chunk = Chunk(stamp=obs.stamp, actions=actions, dt=r.dt,
                      space=ActionSpace.JOINT_ABSOLUTE, names=tuple(self.robot.action_layout),
                      chunk_id=self.chunk_index, episode_id=self.episode_id,
                      reference=joints, extras=extras)
        chunk.inference_time = chunk.blocking_time = time.perf_counter() - t0
        self.chunk_index += 1
        return chunk

    def speculate(self, s_mid: float = 0.5, at: float | None = None) -> Any:
        raise NotImplementedError(SAI_REFUSED)

    def complete(self, handle: Any, obs: Observation, prefix_s: float = 0.0) -> Chunk:
        raise NotImplementedError(SAI_REFUSED)

    # ---- plumbing ---------------------------------------------------------------------
    def _ensure_connected(self) -> None:
        meta = self.conn.connect()
        if self._resolved_for != self.conn.counters["connects"]:  # a new connection
            self.resolved = self.mapping.resolve(self.robot, meta)  # ConfigError: no chunk
            self._resolved_for = self.conn.counters["connects"]
            # a server that keeps memory per connection starts this one fresh; one that keeps
            # it per session gets the session id of this episode with every request
            self._reset_due = False

    def _answer(self, request: dict) -> Any:
        answer = self.conn.call(request, self.timeout_s)
        if isinstance(answer, _TextAnswer):
            kind = error_kind(answer)
            if self.errors[kind] == 0:
                self.log(f"policy server {self.url} failed: {kind} (logged once per kind; "
                         "the arm holds)")
            self.errors[kind] += 1
            raise ServerFailed(f"policy server {self.url} failed: {kind}")
        return answer

    def close(self) -> None:
        self.conn.drop()

    def stats(self) -> dict[str, int]:
        """Counters for /diagnostics: remote.<what>."""
        out = {f"remote.{k}": v for k, v in self.conn.counters.items()}
        out["remote.server_errors"] = sum(self.errors.values())
        out["remote.chunks_refused"] = self.refused
        return out


def remote_policy_from_settings(settings: Any, robot: RobotSpec,
                                log: Callable[[str], None] = print) -> RemotePolicy:
    """The policy node's RemotePolicy from its PolicySettings (server_url, server_mapping,
    server_timeout_s, server_api_key_env)."""
    import os

    from wam_ros.core.config import ConfigError

    if not settings.server_url:
        raise ConfigError("PolicySettings.server_url: empty; backend 'remote' needs "
                          "ws://HOST:PORT (or wss://) of the policy server")
    if settings.scheduler == "sai":
        raise ConfigError(f"PolicySettings.scheduler: {SAI_REFUSED}")
    api_key = ""
    if settings.server_api_key_env:
        api_key = os.environ.get(settings.server_api_key_env, "")
        if not api_key:
            raise ConfigError(f"PolicySettings.server_api_key_env: environment variable "
                              f"{settings.server_api_key_env!r} is not set")
    mapping = ServerMapping.load(settings.server_mapping or "wam_ros")
    try:
        return RemotePolicy(mapping, robot, settings.server_url, api_key=api_key,
                            timeout_s=settings.server_timeout_s, log=log)
    except ValueError as exc:
        raise ConfigError(f"PolicySettings: {exc}") from exc


__all__ = ["SAI_REFUSED", "CallTimeout", "ChunkRefused", "RemoteError", "RemotePolicy",
           "ServerConnection", "ServerFailed", "ServerUnreachable", "error_kind",
           "remote_policy_from_settings"]
