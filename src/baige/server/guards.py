"""Refusing requests no handler should see: control characters in the path or query, bodies
over a size limit, values the database cannot store.

Names in Baige are printable text; a NUL or another control character in a path or query
parameter can only be hostile, and PostgreSQL refuses NUL in text outright (a 500 if it got
that far). So such a request is answered 400 here, before routing, on every endpoint alike —
not left to each handler to remember.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl, unquote

from sqlalchemy.exc import DataError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["MAX_BODY", "MAX_QUERY", "DataError", "RequestLimits", "refuse_unstorable"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_QUERY = 8192  # bytes of query string; filters are short
MAX_BODY = 32 << 20  # bytes of request body (10,000 nodes registered at once is ~4 MiB)


class RequestLimits:
    """ASGI middleware: 400 for control characters in the path or the query, 413 for a
    body over ``MAX_BODY`` (read here, at most that much, before any handler sees it: every
    body this API takes is small, and no client may make the server hold more)."""

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = _problem(scope)
            if problem is not None:
                await _refuse(send, *problem)
                return
            if scope.get("method") in ("POST", "PUT", "PATCH"):
                body = await self._bounded_body(scope, receive)
                if body is None:
                    await _refuse(send, "body", f"the body is over {self.max_body} bytes", 413)
                    return
                receive = _replay(body, receive)
        await self.app(scope, receive, send)

    async def _bounded_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it is known to exceed the limit."""
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    if int(value) > self.max_body:
                        return None
                except ValueError:
                    return None
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; the handler will see an empty body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            parts.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then the server's own (which
    reports the client leaving)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _problem(scope: Scope) -> tuple[str, str] | None:
    """``(field, message)`` for the first thing wrong, or None."""
    raw_path = scope.get("raw_path") or scope.get("path", "").encode()
    path = unquote(raw_path.decode("latin-1")) if isinstance(raw_path, bytes) else str(raw_path)
    if _CONTROL.search(path) or _CONTROL.search(scope.get("path", "")):
        return "path", "the path holds a control character (such as NUL); names never do"
    query = scope.get("query_string", b"")
    if len(query) > MAX_QUERY:
        return "query", f"the query string is {len(query)} bytes; at most {MAX_QUERY}"
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if _CONTROL.search(name) or _CONTROL.search(value):
            field = name if not _CONTROL.search(name) else "query"
            return field, "holds a control character (such as NUL); no filter value does"
    return None


async def _refuse(send: Send, field: str, message: str, status: int = 400) -> None:
    body = json.dumps(
        {"error": f"{field}: {message}", "problems": [{"field": field, "message": message}]}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def refuse_unstorable(_request: Request, error: Exception) -> JSONResponse:
    """A value the database refuses to store (a NUL in text, a number out of range) is the
    client's fault, whatever field it came in by: 400, and nothing was written."""
    cause = getattr(error, "orig", None) or error
    message = str(cause).splitlines()[0][:300] if str(cause) else type(cause).__name__
    return JSONResponse(
        {
            "error": f"a value in the request cannot be stored: {message}",
            "problems": [{"field": "", "message": message}],
        },
        status_code=400,
    )
