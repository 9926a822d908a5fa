"""Applications that orchestrate the node graph: the demo, eval's closed loop, benchmarks."""
