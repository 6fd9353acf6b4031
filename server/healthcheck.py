"""`python -m server.healthcheck [TARGET] [--service NAME] [--server-name NAME]`: exit 0 if the
gRPC health service says SERVING.

Used by docker-compose's healthcheck (no grpc_health_probe binary needed). The server is SERVING
while at least one of its models is READY; ``--service interp.v1.Interp/MODEL`` asks about one
model. Trusts INTERP_HEALTHCHECK_CA, else INTERP_TLS_CERT (a self-signed server certificate is its
own CA), so the check works against a TLS server too; health needs no token. The certificate must
name the host dialled (``localhost``) unless INTERP_HEALTHCHECK_SERVER_NAME (or ``--server-name``)
gives a name it has. Under mutual TLS (--tls-client-ca) it presents INTERP_HEALTHCHECK_CERT /
INTERP_HEALTHCHECK_KEY, a client certificate of that CA.
"""

from __future__ import annotations

import argparse
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
    server_name: str | None = None,
) -> bool:
    if ca_file or cert_file:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(ca_file), private_key=_read(key_file), certificate_chain=_read(cert_file)
        )
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        channel = grpc.secure_channel(target, credentials, options=options)
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as exc:
            hint = ""
            if "Hostname Verification" in (exc.details() or ""):
                hint = (f" (the server's certificate does not name the host in {target}: give a name it has with "
                        "INTERP_HEALTHCHECK_SERVER_NAME or --server-name)")  # fmt: skip
            print(f"unhealthy: {exc.code().name}: {exc.details()}{hint}", file=sys.stderr)
            return False
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m server.healthcheck",
        description="Exit 0 if the interp server's gRPC health says SERVING (at least one model READY), else 1.",
    )
    parser.add_argument(
        "target", nargs="?", default=f"localhost:{os.environ.get('INTERP_PORT', '50051')}",
        help="HOST:PORT (default localhost:$INTERP_PORT, else localhost:50051)",
    )  # fmt: skip
    parser.add_argument(
        "--service", default="interp.v1.Interp",
        help="health name: interp.v1.Interp (default) or interp.v1.Interp/MODEL",
    )  # fmt: skip
    parser.add_argument(
        "--server-name", default=os.environ.get("INTERP_HEALTHCHECK_SERVER_NAME") or None,
        help="TLS: a name the server's certificate has, when it does not name the target's host "
        "(default $INTERP_HEALTHCHECK_SERVER_NAME)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    # The CA to trust: INTERP_HEALTHCHECK_CA, else the server's own (self-signed) INTERP_TLS_CERT, so
    # that turning TLS on in docker-compose does not leave a plaintext healthcheck failing forever.
    ca_file = os.environ.get("INTERP_HEALTHCHECK_CA") or os.environ.get("INTERP_TLS_CERT") or None
    cert_file = os.environ.get("INTERP_HEALTHCHECK_CERT") or None
    key_file = os.environ.get("INTERP_HEALTHCHECK_KEY") or None
    healthy = check(
        args.target, args.service, ca_file=ca_file, cert_file=cert_file, key_file=key_file, server_name=args.server_name
    )
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
