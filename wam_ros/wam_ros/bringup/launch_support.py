"""Turns the node graph (wam_ros.bringup.graph) into launch actions. Imported only by launch files.

Kept separate so that `launch`/`launch_ros`, which exist only in a full ROS 2 install, are never
imported by anything else.
"""

from __future__ import annotations

from collections.abc import Callable

from wam_ros.bringup.graph import ARGUMENTS, GraphArgs, NodeSpec, dds_environment, validate


class RequiredNodeExited(RuntimeError):
    """A node the graph cannot run without exited: launch ends, with a non-zero code."""


def generate(build: Callable[[GraphArgs], list[NodeSpec]], **defaults: str):
    """A LaunchDescription declaring ARGUMENTS and starting the nodes `build` returns.

    The arguments are validated first (a bad one ends the launch with one line and a
    non-zero code); the shipped Fast DDS profile applies unless the user set their own; the
    stateless nodes respawn, and when any other node exits outside a shutdown, launch ends
    with a non-zero code and a line saying which node and why."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    def on_required_exit(name: str):
        def handler(event, context):
            if context.is_shutdown:  # Ctrl-C or another node's exit: everything is stopping
                return None
            raise RequiredNodeExited(f"required node {name} exited with code "
                                     f"{event.returncode}: the graph cannot run without it, "
                                     "shutting down (see its log above)")
        return handler

    def nodes(context, *_, **__):
        values = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
        args = GraphArgs.from_strings(values)
        validate(args, sim=build.__name__ == "build_sim_graph")
        env = [SetEnvironmentVariable(k, v) for k, v in dds_environment().items()]
        return env + [
            Node(
                package="wam_ros",
                executable=spec.executable,
                name=spec.name if spec.rename else None,
                namespace=spec.namespace.strip("/") or None,
                output="screen",
                parameters=[*spec.params_files, dict(spec.parameters)],
                remappings=list(spec.remappings),
                additional_env=dict(spec.env) or None,
                respawn=spec.respawn_delay_s >= 0.0,
                respawn_delay=max(0.0, spec.respawn_delay_s),
                on_exit=None if spec.respawn_delay_s >= 0.0 else on_required_exit(spec.name),
            )
            for spec in build(args)
        ]

    declared = [
        DeclareLaunchArgument(name, default_value=defaults.get(name, default), description=desc)
        for name, (default, desc) in ARGUMENTS.items()
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=nodes)])
