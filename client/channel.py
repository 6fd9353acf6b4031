"""The gRPC channel the SDK opens: options per target, bearer-token metadata, loopback check."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

__all__ = ["DEFAULT_TARGET", "DEFAULT_MAX_MESSAGE_BYTES", "auth_metadata", "channel_options", "is_loopback_target"]

DEFAULT_TARGET = "localhost:50051"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def channel_options(
    target: str,
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    server_name: str | None = None,
    extra: Sequence[tuple[str, Any]] = (),
) -> list[tuple[str, Any]]:
    """The gRPC channel options the SDK uses for a target.

    Args:
        target: e.g. ``"localhost:50051"`` or ``"dns:///interp:50051"``. A ``dns:`` target gets the
            ``round_robin`` load-balancing policy, so calls spread over every address the name
            resolves to (e.g. ``docker compose up --scale interp=N``).
        max_message_bytes: cap on sent and received message size.
        server_name: TLS only: the name to verify the server certificate against, when it differs
            from the host in ``target``.
        extra: raw gRPC options; they override the ones above.
    """
    options: dict[str, Any] = {
        "grpc.max_send_message_length": int(max_message_bytes),
        "grpc.max_receive_message_length": int(max_message_bytes),
    }
    if target.startswith("dns:"):
        options["grpc.lb_policy_name"] = "round_robin"
    if server_name:
        options["grpc.ssl_target_name_override"] = server_name
    for key, value in extra:
        options[key] = value
    return list(options.items())


def is_loopback_target(target: str) -> bool:
    """True when a gRPC target can only reach this machine (loopback address, localhost, unix socket).

    Accepts ``host:port``, ``[v6]:port``, ``dns:///host:port``, ``dns://authority/host:port``,
    ``ipv4:addr:port,...`` / ``ipv6:[addr]:port,...`` (every address must be loopback) and ``unix:``.
    """
    scheme, sep, after = target.strip().partition(":")
    if sep and scheme in ("unix", "unix-abstract"):
        return True
    if sep and scheme == "dns":
        names = [after[3:] if after.startswith("///") else after.removeprefix("//").partition("/")[2]]
    elif sep and scheme in ("ipv4", "ipv6"):
        names = after.split(",")
    else:
        names = [target.strip()]
    return all(_is_loopback_host(_host_of(name)) for name in names)


def _host_of(address: str) -> str:
    if address.startswith("["):
        return address[1:].partition("]")[0]
    return address.partition(":")[0] if address.count(":") == 1 else address  # bare IPv6: no port


def _is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other name may resolve anywhere


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...] | None:
    if token is None:
        return None
    token = token.strip()
    if not token:
        raise ValueError("token is empty")
    if any(ord(ch) < 0x21 or ord(ch) > 0x7E for ch in token):
        raise ValueError("token must be printable ASCII without spaces")
    return (("authorization", f"Bearer {token}"),)
