"""ROS-free reference World Action Model: encoder, MoT backbone, flow matching, memory."""
