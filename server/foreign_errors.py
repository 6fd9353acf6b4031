"""The gRPC status of exceptions defined where grpc is not imported (``interp/``, ``models/``,
``protos/``): registered once, on import, with :func:`server.errors.register_status`.

The server's own exceptions carry theirs (``grpc_status_code``); a class not named here and
carrying none is INTERNAL. Subclasses inherit: ``WeightsNotFound`` is a ``WeightsError``.
"""

from __future__ import annotations

import grpc

from interp.errors import Cancelled, InvalidInput
from models.datasets import DatasetNotFound
from models.errors import FixedInputSize, ModelUnavailable, UnknownLayer, UnknownModel, WeightsError
from protos.codec import TensorCodecError
from server.errors import register_status

FOREIGN_STATUS: dict[type[BaseException], grpc.StatusCode] = {
    UnknownModel: grpc.StatusCode.NOT_FOUND,
    ModelUnavailable: grpc.StatusCode.FAILED_PRECONDITION,
    UnknownLayer: grpc.StatusCode.INVALID_ARGUMENT,
    FixedInputSize: grpc.StatusCode.INVALID_ARGUMENT,
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    TensorCodecError: grpc.StatusCode.INVALID_ARGUMENT,
    WeightsError: grpc.StatusCode.FAILED_PRECONDITION,
    DatasetNotFound: grpc.StatusCode.FAILED_PRECONDITION,  # class-name sets need the training data
    Cancelled: grpc.StatusCode.CANCELLED,
}

for _kind, _code in FOREIGN_STATUS.items():
    register_status(_kind, _code)
