"""Reading request bodies: a spec as JSON or YAML, with errors that name the field.

Submissions come from the CLI (YAML files, with their line numbers) and from scripts
(JSON); both end in the same pydantic models, and both fail with the same 400 body.
"""

from __future__ import annotations

import json

from fastapi import Request

from baige.api.loader import AnySpec, SpecError, load_specs, parse_spec
from baige.control.errors import Invalid

__all__ = ["MAX_BODY", "read_spec"]

MAX_BODY = 1 << 20  # a spec is small; refuse anything over 1 MiB


async def read_spec(request: Request, expected: tuple[type[AnySpec], ...], what: str) -> AnySpec:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise Invalid(f"the body is {len(body)} bytes; a spec is at most {MAX_BODY}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("the body is not UTF-8 text") from None
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    source = request.headers.get("x-baige-source", "request body")
    try:
        if content_type in ("application/yaml", "application/x-yaml", "text/yaml", "text/plain"):
            specs = load_specs(text, source)
            if len(specs) != 1:
                raise Invalid(f"send one {what} per request; the body holds {len(specs)} specs")
            spec = specs[0]
        elif content_type == "application/json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                raise Invalid(
                    f"the body is not valid JSON: {err.msg} (line {err.lineno})"
                ) from None
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
