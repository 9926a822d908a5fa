"""ROS-free core: robot descriptions, timeline, smoothing, decoding, safety, synchronisation."""
