"""Unit tests of server/ without a gRPC server: imaging, budgets, batcher, errors, stores, threads (fast tier)."""
