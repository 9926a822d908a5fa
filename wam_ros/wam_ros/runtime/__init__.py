"""ROS-free runtime: inference backends, policy runner and schedulers."""

from wam_ros.runtime.loading import load_policy
from wam_ros.runtime.policy import Policy, PolicyMeta
from wam_ros.runtime.speculation import SpeculativeHandle

__all__ = ["Policy", "PolicyMeta", "SpeculativeHandle", "load_policy"]
