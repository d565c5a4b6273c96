"""Reading request bodies: a spec as JSON or YAML, with errors that name the field.

Submissions come from the CLI (YAML files, with their line numbers) and from scripts
(JSON); both end in the same pydantic models, and both fail with the same 400 body.
"""

from __future__ import annotations

import json

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from baige.api.loader import AnySpec, SpecError, load_specs, parse_spec
from baige.api.parse_limits import load_json
from baige.control.errors import Invalid

__all__ = ["MAX_BODY", "read_body", "read_spec"]


MAX_BODY = 1 << 20  # a spec is small; refuse anything over 1 MiB

_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/plain")


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The body, read as it streams in and refused as soon as it is known to exceed ``limit``
    (at once for a ``Content-Length`` over it), so no client makes the server hold more."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise Invalid(f"the Content-Length header {declared!r} is not a number") from None
        if size > limit:
            raise Invalid(f"the body is {size} bytes; a spec is at most {limit}")
    parts: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise Invalid(f"the body is over {limit} bytes; a spec is at most {limit}")
        parts.append(chunk)
    return b"".join(parts)


async def read_spec(request: Request, expected: tuple[type[AnySpec], ...], what: str) -> AnySpec:
    """The one spec in the request body. Parsing and validation run in a worker thread: they
    are bounded (:mod:`baige.api.parse_limits`), but a second or so of a hostile body must
    not stall every other request on the event loop."""
    body = await read_body(request)
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    source = request.headers.get("x-baige-source", "request body")
    return await run_in_threadpool(_parse_body, body, content_type, source, expected, what)


def _parse_body(
    body: bytes, content_type: str, source: str, expected: tuple[type[AnySpec], ...], what: str
) -> AnySpec:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("the body is not UTF-8 text") from None
    try:
        if content_type in _YAML_TYPES:
            specs = load_specs(text, source)
            if len(specs) != 1:
                raise Invalid(f"send one {what} per request; the body holds {len(specs)} specs")
            spec = specs[0]
        elif content_type == "application/json":
            try:
                data = load_json(text)
            except json.JSONDecodeError as err:
                raise Invalid(f"the body is not valid JSON: line {err.lineno}: {err.msg}") from None
            except ValueError as err:  # valid JSON that Python cannot build (huge integers)
                raise Invalid(f"the body cannot be read: {str(err).split(';')[0]}") from None
            if isinstance(data, dict):
                data.setdefault("kind", expected[0].model_fields["kind"].default)
            spec = parse_spec(data, source)
        else:
            raise Invalid(
                f"unsupported content type {content_type!r}: send application/json or "
                "application/yaml"
            )
    except SpecError as err:
        raise Invalid(f"invalid {what}", err.as_dicts()) from None
    if not isinstance(spec, expected):
        raise Invalid(
            f"expected a {what}, got kind {spec.kind!r}",
            [{"field": "kind", "message": f"must be {expected[0].model_fields['kind'].default}"}],
        )
    return spec
