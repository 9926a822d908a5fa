"""wam_ros: World Action Models on dual-arm robots with ROS 2.

Layers (enforced by test/test_layering.py):
  core/, model/, runtime/   ROS-free: numpy / torch only
  nodes/, sim/, data/       rclpy and message code, thin over the layers above
"""

__version__ = "0.1.0"
