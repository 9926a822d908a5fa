"""The node graph the launch files start, and what the launch files share."""
