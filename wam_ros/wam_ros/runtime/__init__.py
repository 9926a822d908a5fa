"""ROS-free runtime: inference backends, policy runner and schedulers."""
