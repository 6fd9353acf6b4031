"""The interp.v1 wire contract: interp.proto and its committed generated stubs."""
