"""Thin rclpy nodes over the core; message conversions and topic names live here too."""
