"""Real AgileX CobotMagic: observation, policy, decoder and smoother nodes.

    ros2 launch wam_ros cobot_magic.launch.py checkpoint:=/path/to/ckpt scheduler:=async
"""

from wam_ros.graph import build_graph
from wam_ros.launch_support import generate


def generate_launch_description():
    return generate(build_graph, robot="cobot_magic")
