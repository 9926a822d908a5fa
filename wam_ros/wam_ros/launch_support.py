"""Turns the node graph (wam_ros.graph) into launch actions. Imported only by launch files.

Kept separate so that `launch`/`launch_ros`, which exist only in a full ROS 2 install, are never
imported by anything else.
"""

from __future__ import annotations

from collections.abc import Callable

from wam_ros.graph import ARGUMENTS, GraphArgs, NodeSpec


def generate(build: Callable[[GraphArgs], list[NodeSpec]], **defaults: str):
    """A LaunchDescription declaring ARGUMENTS and starting the nodes `build` returns."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    def nodes(context, *_, **__):
        values = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
        return [
            Node(
                package="wam_ros",
                executable=spec.executable,
                name=spec.name if spec.rename else None,
                output="screen",
                parameters=[*spec.params_files, dict(spec.parameters)],
                remappings=list(spec.remappings),
                respawn=spec.respawn_delay_s >= 0.0,
                respawn_delay=max(0.0, spec.respawn_delay_s),
            )
            for spec in build(GraphArgs.from_strings(values))
        ]

    declared = [
        DeclareLaunchArgument(name, default_value=defaults.get(name, default), description=desc)
        for name, (default, desc) in ARGUMENTS.items()
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=nodes)])
