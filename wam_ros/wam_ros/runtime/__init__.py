"""ROS-free runtime: inference backends, policy runner and schedulers."""

from wam_ros.runtime.policy import Policy, PolicyMeta, SpeculativeHandle, load_policy

__all__ = ["Policy", "PolicyMeta", "SpeculativeHandle", "load_policy"]
