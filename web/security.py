"""The web port's guard (pure ASGI middleware): security headers, the login cookie, cross-site checks.

- Every response carries a strict Content-Security-Policy: scripts, styles, fetches and images
  from this origin only (images also as ``data:`` URLs inside its own JSON), video only from
  ``blob:`` URLs (the live page's file, read by the browser itself), no frames, no plugins.
  The pages load nothing from elsewhere, so they work offline.
- With an access token, every path but the login page needs the session cookie (HttpOnly,
  SameSite=Strict, Secure under TLS); its value is an HMAC of the token under a per-process key,
  so the token itself is never stored in the browser.
- A state-changing request (anything but GET/HEAD) must carry ``X-Interp-Web: 1`` (a header a
  cross-site form cannot send and a cross-site fetch cannot send without a preflight this app
  never grants), and its Origin / Sec-Fetch-Site, when the browser sends them, must be this origin.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from urllib.parse import quote, urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src blob:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; "
    "object-src 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
COOKIE = "interp_web_session"
CSRF_HEADER = "x-interp-web"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PATHS = ("/login", "/api/login", "/static/")  # reachable before logging in


def session_value(key: bytes, access_token: str) -> str:
    return hmac.new(key, access_token.encode(), hashlib.sha256).hexdigest()


class Session:
    """The access token's login state: the cookie's value is an HMAC of the token under a per-process key."""

    def __init__(self, access_token: str | None, *, secure_cookie: bool) -> None:
        self.access_token = access_token
        self.secure_cookie = secure_cookie
        self.value = session_value(secrets.token_bytes(32), access_token) if access_token else ""

    def logged_in(self, request: HTTPConnection) -> bool:
        return not self.access_token or hmac.compare_digest(request.cookies.get(COOKIE, ""), self.value)

    def check_login(self, token: str) -> bool:
        return bool(self.access_token) and hmac.compare_digest(token.encode(), (self.access_token or "").encode())

    def cookie_header(self) -> str:
        secure = "; Secure" if self.secure_cookie else ""
        return f"{COOKIE}={self.value}; HttpOnly; SameSite=Strict; Path=/{secure}"


class Guard:
    """Wraps the app: headers on every response, login and cross-site checks before any route."""

    def __init__(self, app: ASGIApp, *, session: Session, hosts: tuple[str, ...] = ("*",)) -> None:
        self.app = app
        self.session = session
        self.hosts = frozenset(h.lower() for h in hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self._refusal(request)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        if refusal is None:
            await self.app(scope, receive, send_with_headers)
            return
        status, body, location = refusal
        headers = [(b"content-type", b"application/json")]
        if location:
            headers.append((b"location", location.encode()))
        await send_with_headers({"type": "http.response.start", "status": status, "headers": headers})
        await send_with_headers({"type": "http.response.body", "body": json.dumps(body).encode()})

    def _refusal(self, request: Request) -> tuple[int, dict[str, object], str] | None:
        """(status, JSON body, redirect location) when the request may not go on, else None."""
        host = host_name(request.headers.get("host", ""))
        if "*" not in self.hosts and host not in self.hosts:
            # a page of another site whose name now resolves to this address (DNS rebinding)
            message = f"this explorer answers {', '.join(sorted(self.hosts))}, not {host!r}"
            return 421, {"code": "PERMISSION_DENIED", "message": message, "field": None}, ""
        if request.method not in SAFE_METHODS:
            reason = cross_site_reason(request)
            if reason:
                return 403, {"code": "PERMISSION_DENIED", "message": reason, "field": None}, ""
        path = request.url.path
        if self.session.logged_in(request) or path.startswith(PUBLIC_PATHS):
            return None
        body: dict[str, object] = {"code": "UNAUTHENTICATED", "message": "log in to the explorer first", "field": None}
        if path.startswith("/api/") or request.method not in SAFE_METHODS:
            return 401, body, ""
        target = path + (f"?{request.url.query}" if request.url.query else "")
        return 303, body, f"/login?next={quote(target, safe='')}"


def host_name(host: str) -> str:
    """The name of a Host header without its port: ``[::1]:8080`` -> ``::1``, ``a.b:80`` -> ``a.b``."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0].lower()
    return host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()


def cross_site_reason(request: Request) -> str:
    """Why a state-changing request is refused as possibly cross-site ('' when it is not)."""
    if request.headers.get(CSRF_HEADER) != "1":
        return f"state-changing requests must carry the {CSRF_HEADER}: 1 header (sent by the explorer's pages)"
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"cross-site request refused (Sec-Fetch-Site: {site})"
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host", ""):
        return f"cross-origin request refused (Origin {origin})"
    return ""
