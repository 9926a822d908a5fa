"""Simulated robot plus the full node graph, on sim time.

    ros2 launch wam_ros sim.launch.py robot:=agibot_g1
"""

from wam_ros.bringup.graph import build_sim_graph
from wam_ros.bringup.launch_support import generate


def generate_launch_description():
    return generate(build_sim_graph, use_sim_time="true")
