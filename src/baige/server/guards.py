"""Refusing requests whose path or query carry characters no name or filter can hold.

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
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["MAX_QUERY", "ControlCharacterGuard", "DataError", "refuse_unstorable"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_QUERY = 8192  # bytes of query string; filters are short


class ControlCharacterGuard:
    """ASGI middleware: 400 for control characters in the path or the query."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = _problem(scope)
            if problem is not None:
                await _refuse(send, *problem)
                return
        await self.app(scope, receive, send)


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


async def _refuse(send: Send, field: str, message: str) -> None:
    body = json.dumps(
        {"error": f"{field}: {message}", "problems": [{"field": field, "message": message}]}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 400,
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
