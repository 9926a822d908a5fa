"""`wam-ros eval`: success and completion time per scheduler and memory (see wam_ros.demo)."""

from wam_ros.demo import register_eval as register

__all__ = ["register"]
