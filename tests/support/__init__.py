"""Helpers shared by the tests, not test modules: tiny models, a scripted servicer, a weights
mirror, the configuration of the real in-process servers."""
