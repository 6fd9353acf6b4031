"""Unit tests of models/: registry, catalogue, datasets, weights and the hub, training (fast tier)."""
