"""`wam-ros eval` (registered with demo: cli/demo.py)."""

from wam_ros.cli.demo import register_eval as register

__all__ = ["register"]
