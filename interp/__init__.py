"""Interpretability methods as pure functions on (torch module, batch of pixels in [0, 1]).

No gRPC, no files, no global state: the server is the one place these meet the models.
"""
