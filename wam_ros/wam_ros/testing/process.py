"""Node processes and spinning helpers shared by tests, benchmarks and the demo: start a node as
its own process (keeping its output for error messages), spin until a condition holds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rclpy.executors import SingleThreadedExecutor

from wam_ros.core.settings import RT_PRIORITY_DEFAULT


def spin_until(executor: SingleThreadedExecutor, condition: Callable[[], bool],
               timeout: float, step: float = 0.02) -> bool:
    """Spin until `condition()` holds; discovery can take seconds, so never sleep fixed times."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        executor.spin_once(timeout_sec=step)
    return condition()


class NodeProcess:
    """A child process (a node) whose output is kept for the failure message."""

    def __init__(self, cmd: list[str], env: dict[str, str] | None = None,
                 log_path: str | None = None, own_session: bool = True) -> None:
        """own_session False: the child stays in this process's session (in a process group
        of its own, so a terminal's Ctrl-C still reaches only us), as ros2 launch starts
        nodes. Linux shares CPU between sessions first (autogroup) and applies nice values
        only within one, so the policy's lowered inference threads yield to the other nodes
        only when they share a session."""
        self.cmd = cmd
        self.log_path = log_path
        self._log = open(log_path, "w") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            cmd, env={**os.environ, **(env or {})}, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=own_session, process_group=None if own_session else 0,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        if not self.log_path:
            return ""
        with open(self.log_path) as f:
            return f.read()[-4000:]

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT (clean shutdown), then SIGKILL if it does not exit; only our own PID."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log is not subprocess.DEVNULL:
            self._log.close()
        return self.proc.returncode


def python_module_cmd(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def policy_params_file(path: Path, policy: dict[str, object] | None) -> str:
    """A ros__parameters file setting `policy` parameters of the policy node (what a user's
    `params_file:=` launch argument would); "" when there are none. The observation node
    needs none: it follows the policy's input contract."""
    if not policy:
        return ""
    import yaml

    path.write_text(yaml.safe_dump({"/**/wam_policy": {"ros__parameters": dict(policy)}}))
    return str(path)


def start_graph_processes(workdir: Path, robot: str, checkpoint: Path, *,
                          backend: str = "torch", memory: str = "kv", scheduler: str = "async",
                          fake_robot: dict[str, object] | None = None,
                          composed: bool = False,
                          policy_params: dict[str, object] | None = None,
                          realtime_priority: int = RT_PRIORITY_DEFAULT) -> list[NodeProcess]:
    """The kinematic fake robot plus the node graph (wam_ros.bringup.graph) as separate
    processes (or the composed bringup: one process), started as the launch files start it;
    logs go to `workdir`. realtime_priority: the launch argument (by default the launch
    files' priority for the graph's control path; 0: normal scheduling)."""
    from wam_ros.bringup.graph import GraphArgs, NodeSpec, build_graph

    params = policy_params_file(workdir / f"params_{scheduler}.yaml", policy_params)
    graph = build_graph(GraphArgs(robot=robot, checkpoint=str(checkpoint), backend=backend,
                                  memory=memory, scheduler=scheduler, params_file=params,
                                  composed=composed, realtime_priority=realtime_priority))
    fake = NodeSpec("wam_fake_robot", "", "wam_ros.nodes.fake_robot",
                    {"robot": robot, **(fake_robot or {"camera_scale": 0.25})})
    return [NodeProcess(s.command(), env=s.env,
                        log_path=str(workdir / f"{scheduler}_{s.name}.log"))
            for s in [fake, *graph]]
