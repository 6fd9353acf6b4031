"""Checks of the repository as a whole: the method table, the protos, imports, docs, packaging,
self-containment (fast tier)."""
