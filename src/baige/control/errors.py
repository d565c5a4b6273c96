"""Errors the control plane reports to users, each with the HTTP status it maps to."""

from __future__ import annotations

__all__ = [
    "ApiError",
    "Conflict",
    "Forbidden",
    "Invalid",
    "NotFound",
    "Unauthorized",
    "Unavailable",
]


class ApiError(Exception):
    """A user-facing error: a status code, a sentence, and optionally per-field problems."""

    status = 400

    def __init__(self, message: str, problems: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.message}
        if self.problems:
            body["problems"] = self.problems
        return body


class Invalid(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class Unavailable(ApiError):
    """Nothing the client did wrong: a dependency (the database) is away; retry later."""

    status = 503
