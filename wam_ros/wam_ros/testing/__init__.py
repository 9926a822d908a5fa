"""Harnesses and fakes for tests and benchmarks: node processes, tiny checkpoints."""
