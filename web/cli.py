"""``interp-web``: serve the explorer over an interp.v1 service.

    interp-web --server localhost:50051                    # http://127.0.0.1:8080
    interp-web --server interp:50051 --host 0.0.0.0 --access-token-file /run/secrets/web \\
        --certfile web.crt --keyfile web.key                # other machines: login page, TLS

Binding a non-loopback address needs the explorer's own access token (a login page, then an
HttpOnly cookie) or ``--allow-unauthenticated``; without either it refuses to start.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from web.settings import WebSettings, is_loopback

MIN_TOKEN_CHARS = 16


def package_version() -> str:
    try:
        return metadata.version("cnn-interp")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="interp-web", description="The explorer: a web page over an interp.v1 service.")

    def env(name: str, default: Any = None) -> Any:
        return os.environ.get(name) or default  # compose sets unused variables to ""

    # flag, environment variable, default without it, help, argparse extras (in --help's order)
    for flag, variable, fallback, text, extra in (
        ("--server", "INTERP_SERVER", "localhost:50051",
         "the gRPC service, HOST:PORT (env INTERP_SERVER; default localhost:50051)", {}),
        ("--token", "INTERP_TOKEN", None,
         "bearer token for the service (env INTERP_TOKEN); kept by this process, never sent to browsers", {}),
        ("--tls", None, False, "reach the service over TLS", {"action": "store_true"}),
        ("--ca-file", "INTERP_CA_FILE", None, "CA bundle of the service (implies --tls)", {}),
        ("--client-cert", "INTERP_CLIENT_CERT", None,
         "PEM client certificate for a service with mutual TLS (implies --tls; env INTERP_CLIENT_CERT)", {}),
        ("--client-key", "INTERP_CLIENT_KEY", None, "its PEM private key (env INTERP_CLIENT_KEY)", {}),
        ("--host", "INTERP_WEB_HOST", "127.0.0.1",
         "address to listen on (env INTERP_WEB_HOST; default 127.0.0.1, loopback only)", {}),
        ("--port", "INTERP_WEB_PORT", "8080", "port (env INTERP_WEB_PORT; default 8080)", {"type": int}),
        ("--access-token-file", "INTERP_WEB_ACCESS_TOKEN_FILE", None,
         "file holding the explorer's own access token (or env INTERP_WEB_ACCESS_TOKEN); browsers log in with "
         "it once", {"type": Path}),
        ("--allow-unauthenticated", None, env("INTERP_WEB_ALLOW_UNAUTHENTICATED", "0") == "1",
         "listen on a non-loopback address without an access token (anyone who reaches it may use it)",
         {"action": "store_true"}),
        ("--certfile", "INTERP_WEB_CERTFILE", None, "TLS certificate (PEM) for the web port", {}),
        ("--keyfile", "INTERP_WEB_KEYFILE", None, "its private key (PEM)", {}),
    ):  # fmt: skip
        p.add_argument(flag, default=env(variable, fallback) if variable else fallback, help=text, **extra)
    p.add_argument("--max-upload-mb", type=float, default=8.0, help="largest image upload in MB (default 8)")
    p.add_argument("--version", action="version", version=f"interp-web {package_version()}")
    return p  # fmt: skip


def settings_from(args: argparse.Namespace) -> WebSettings:
    """The settings, after the checks that make the explorer refuse to start (SystemExit with the reason)."""
    access = os.environ.get("INTERP_WEB_ACCESS_TOKEN") or None
    if args.access_token_file is not None:
        access = Path(args.access_token_file).read_text().strip() or None
    if access is not None and len(access) < MIN_TOKEN_CHARS:
        raise SystemExit(f"interp-web: the access token must have at least {MIN_TOKEN_CHARS} characters")
    if not is_loopback(args.host) and access is None and not args.allow_unauthenticated:
        raise SystemExit(
            f"interp-web: refusing to listen on {args.host}, which is not a loopback address, without an "
            "access token (--access-token-file or INTERP_WEB_ACCESS_TOKEN) or --allow-unauthenticated"
        )
    if (args.certfile is None) != (args.keyfile is None):
        raise SystemExit("interp-web: --certfile and --keyfile go together")
    if (args.client_cert is None) != (args.client_key is None):
        raise SystemExit("interp-web: --client-cert and --client-key go together")
    if args.max_upload_mb <= 0:
        raise SystemExit("interp-web: --max-upload-mb must be positive")
    return WebSettings(
        server=args.server,
        token=args.token or None,
        access_token=access,
        tls=bool(args.tls or args.ca_file or args.client_cert),
        ca_file=args.ca_file,
        cert_file=args.client_cert,
        key_file=args.client_key,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        # loopback without a token: loopback Host names only (no DNS rebinding); a public address
        # without a token was asked for explicitly, and its names are not known here
        allowed_hosts=("*",) if access is None and not is_loopback(args.host) else None,
    )


def _say_if_the_service_is_silent(client: Any, server: str) -> None:
    """One line on stderr when the service does not answer now (the pages say so until it does)."""
    from client.errors import InterpError

    try:
        client.server_info(timeout=3)
    except InterpError as error:
        said = f"({error.code_name}: {error.message.splitlines()[0][:200]})"
        silent = error.code_name in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
        what = f"does not answer yet {said}" if silent else f"refused the explorer's first call {said}"
        print(f"interp-web: warning: the service at {server} {what}; the pages will say so until it "
              f"{'does' if silent else 'accepts it'}", file=sys.stderr, flush=True)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    settings = settings_from(args)
    missing = [name for name in ("starlette", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(
            f"interp-web needs the web extra (missing: {', '.join(missing)}): pip install 'cnn-interp[web]'"
        )
    import uvicorn

    from web.app import create_app

    app = create_app(settings, secure_cookie=args.certfile is not None)
    scheme = "https" if args.certfile else "http"
    print(f"interp-web: {scheme}://{args.host}:{args.port}/ over {settings.server}", file=sys.stderr, flush=True)
    _say_if_the_service_is_silent(app.state.explorer.client, settings.server)
    uvicorn.run(app, host=args.host, port=args.port, ssl_certfile=args.certfile, ssl_keyfile=args.keyfile,
                log_level="warning")  # fmt: skip


if __name__ == "__main__":
    main()
