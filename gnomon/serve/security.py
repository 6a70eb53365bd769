"""What makes ``gnomon serve`` fit to be reached from a network: security headers on every
answer, and an optional bearer token for a database not meant to be public.

Headers (:class:`SecurityHeaders`): a Content-Security-Policy that lets a page run only the
scripts the server itself serves (``script-src 'self'``: no inline script, no other origin,
no ``eval``), take no frame (``frame-ancestors 'none'``, and ``X-Frame-Options: DENY`` for
older browsers), ``X-Content-Type-Options: nosniff`` (a download is never run as a script),
and ``Referrer-Policy: no-referrer``. Styles may be inline (``style-src 'self'
'unsafe-inline'``): the figures' library sets styles from script, and a style cannot run code.

Token (:class:`BearerToken`): with ``gnomon serve --token-file FILE`` every request must carry
``Authorization: Bearer <token>``; anything else is a 401 error document. The token is
compared in constant time (:func:`hmac.compare_digest`) and is never logged or echoed.
"""

from __future__ import annotations

import hmac
import ipaddress
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gnomon.serve.errors import send_error

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)

MIN_TOKEN_CHARS = 16


class SecurityHeaders:
    """ASGI middleware: :data:`SECURITY_HEADERS` on every HTTP answer, replacing any the app
    set (the outermost middleware, so error answers of the others get them too)."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self.names = {name for name, _ in SECURITY_HEADERS}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers") or []
                        if k.lower() not in self.names]
                message = {**message, "headers": [*kept, *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BearerToken:
    """ASGI middleware: 401 unless the request's ``Authorization`` is ``Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self._expected = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _bearer(scope)
        if given is not None and hmac.compare_digest(given, self._expected):
            await self.app(scope, receive, send)
            return
        if given is None:
            detail = "this server needs a bearer token: send 'Authorization: Bearer <token>'"
            challenge = b'Bearer realm="gnomon"'
        else:
            detail = "the bearer token is not this server's"
            challenge = b'Bearer realm="gnomon", error="invalid_token"'
        await send_error(send, 401, detail, [(b"www-authenticate", challenge)])


def _bearer(scope: Scope) -> bytes | None:
    """The token of the request's ``Authorization: Bearer`` header, or None."""
    for name, value in scope.get("headers") or []:
        if name.lower() == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
            return None
    return None


class TokenFileError(ValueError):
    """The token file cannot be used; the message names the file, never its content."""


def read_token_file(path: Path) -> str:
    """The token in ``path``: its one line, stripped; at least :data:`MIN_TOKEN_CHARS`
    printable ASCII characters with no space (what an HTTP header carries unchanged)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise TokenFileError(f"cannot read the token file {path}: {reason}") from None
    token = text.strip()
    if not token:
        raise TokenFileError(f"the token file {path} is empty")
    if len(token) < MIN_TOKEN_CHARS:
        raise TokenFileError(f"the token in {path} is too short: use at least "
                             f"{MIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`)")
    if not token.isascii() or any(c.isspace() or not c.isprintable() for c in token):
        raise TokenFileError(f"the token in {path} must be one word of printable ASCII "
                             "characters")
    return token


def is_loopback(host: str) -> bool:
    """Whether a ``--host`` keeps the server on this machine."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to anything
