"""Unit tests of interp/: the methods against independent oracles, on tiny and trained models (fast tier)."""
