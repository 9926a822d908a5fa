"""Simulated robots (MuJoCo) with mock ros2_control controllers."""
