"""Python SDK and `interp` CLI for the cnn-interp gRPC service (grpc, protobuf, numpy; never torch).

from client import InterpClient
with InterpClient("localhost:50051") as c:
    print(c.classify("cat.png", model="vgg16").top)
"""

from client import errors
from client.errors import InterpError
from client.images import ImageLike, image_message
from client.results import *  # noqa: F403 - every result class, listed in client.results.__all__
from client.results import __all__ as _RESULTS
from client.sdk import DEFAULT_TARGET, EventStream, InterpClient

__all__ = [
    "DEFAULT_TARGET",
    "EventStream",
    "ImageLike",
    "InterpClient",
    "InterpError",
    "errors",
    "image_message",
    *(name for name in _RESULTS if name[0].isupper() and name not in ("RESULTS", "ITEM_RESULTS")),
]
