"""Run a launch file of an installed package the way `ros2 launch PACKAGE FILE NAME:=VALUE...`
does (ros2cli cannot be installed here): find it in the package's share directory through the
ament index, include it with the arguments, run the LaunchService, exit with its code."""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    from ament_index_python.packages import get_package_share_directory
    from launch import LaunchDescription, LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import AnyLaunchDescriptionSource

    package, file, *args = argv
    path = os.path.join(get_package_share_directory(package), "launch", file)
    arguments = [tuple(a.split(":=", 1)) for a in args]
    service = LaunchService(argv=args)
    service.include_launch_description(LaunchDescription([IncludeLaunchDescription(
        AnyLaunchDescriptionSource(path), launch_arguments=arguments)]))
    return service.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
