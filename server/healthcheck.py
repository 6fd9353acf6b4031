"""`python -m server.healthcheck [TARGET]`: exit 0 if the gRPC health service says SERVING.

Used by docker-compose's healthcheck (no grpc_health_probe binary needed). Trusts INTERP_HEALTHCHECK_CA,
else INTERP_TLS_CERT (a self-signed server certificate is its own CA), so the check works against a
TLS server too; health needs no token.
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(target: str, service: str = "interp.v1.Interp", ca_file: str | None = None, timeout: float = 5.0) -> bool:
    if ca_file:
        with open(ca_file, "rb") as handle:
            channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=handle.read()))
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as exc:
            print(f"unhealthy: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return False
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def main() -> int:
    target = sys.argv[1] if len(sys.argv) > 1 else f"localhost:{os.environ.get('INTERP_PORT', '50051')}"
    # The CA to trust: INTERP_HEALTHCHECK_CA, else the server's own (self-signed) INTERP_TLS_CERT, so
    # that turning TLS on in docker-compose does not leave a plaintext healthcheck failing forever.
    ca_file = os.environ.get("INTERP_HEALTHCHECK_CA") or os.environ.get("INTERP_TLS_CERT") or None
    return 0 if check(target, ca_file=ca_file) else 1


if __name__ == "__main__":
    sys.exit(main())
