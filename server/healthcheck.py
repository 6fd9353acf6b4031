"""`python -m server.healthcheck [TARGET]`: exit 0 if the gRPC health service says SERVING.

Used by docker-compose's healthcheck (no grpc_health_probe binary needed). Trusts INTERP_HEALTHCHECK_CA,
else INTERP_TLS_CERT (a self-signed server certificate is its own CA), so the check works against a
TLS server too; health needs no token. Under mutual TLS (--tls-client-ca) it presents
INTERP_HEALTHCHECK_CERT / INTERP_HEALTHCHECK_KEY, a client certificate of that CA.
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as handle:
        return handle.read()


def check(
    target: str,
    service: str = "interp.v1.Interp",
    ca_file: str | None = None,
    timeout: float = 5.0,
    cert_file: str | None = None,
    key_file: str | None = None,
) -> bool:
    if ca_file or cert_file:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(ca_file), private_key=_read(key_file), certificate_chain=_read(cert_file)
        )
        channel = grpc.secure_channel(target, credentials)
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
    cert_file = os.environ.get("INTERP_HEALTHCHECK_CERT") or None
    key_file = os.environ.get("INTERP_HEALTHCHECK_KEY") or None
    return 0 if check(target, ca_file=ca_file, cert_file=cert_file, key_file=key_file) else 1


if __name__ == "__main__":
    sys.exit(main())
