"""Real AgileX CobotMagic: observation, policy, decoder and smoother nodes.

    ros2 launch wam_ros cobot_magic.launch.py checkpoint:=/path/to/ckpt scheduler:=async
"""

from wam_ros.bringup.graph import build_graph
from wam_ros.bringup.launch_support import generate


def generate_launch_description():
    return generate(build_graph, robot="cobot_magic")
