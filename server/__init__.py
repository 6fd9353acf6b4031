"""The cnn-interp gRPC server: config, servicer, error table, image decoding, app."""

__version__ = "0.1.0"
