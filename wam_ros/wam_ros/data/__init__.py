"""Episode recording, bag replay and datasets."""
