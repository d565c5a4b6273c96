"""Field types shared by every spec: names, labels, accelerator types, the strict base model.

Specs are written by people; unknown fields are rejected (``extra="forbid"``) because a typo
such as ``replica: 4`` silently ignored would run the wrong job.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from baige.hw.catalog import UnknownAcceleratorError, get_chip

__all__ = [
    "MAX_LABELS",
    "AcceleratorType",
    "Argument",
    "LabelKey",
    "LabelValue",
    "Labels",
    "Name",
    "SpecModel",
    "Text",
    "normalize_accelerator_type",
    "nul_free",
]

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: use 1–63 lower-case letters, digits, '-' or '.', "
            "starting and ending with a letter or digit"
        )
    return value


def normalize_accelerator_type(value: str) -> str:
    """The catalog key for ``value`` (``"H100"`` → ``"h100"``); unknown types are refused."""
    try:
        key: str = get_chip(value).key
    except UnknownAcceleratorError as err:
        raise ValueError(str(err)) from None
    return key


Name = Annotated[str, AfterValidator(_check_name)]
AcceleratorType = Annotated[str, AfterValidator(normalize_accelerator_type)]
# Bounds on what people write, so no spec is unboundedly large in any one field: generous for
# real use (Kubernetes allows 253-character label keys and 63-character values) and far below
# what would cost the server anything.
MAX_LABELS = 256
LabelKey = Annotated[str, StringConstraints(max_length=253)]
LabelValue = Annotated[str, StringConstraints(max_length=1024)]
Labels = Annotated[dict[LabelKey, LabelValue], Field(default_factory=dict, max_length=MAX_LABELS)]
Argument = Annotated[str, StringConstraints(max_length=128 * 1024)]
"""One command-line argument or environment value: Linux's own limit (MAX_ARG_STRLEN)."""
Text = Annotated[str, StringConstraints(max_length=4096)]
"""A path, a description, a reason: PATH_MAX characters at most."""


def nul_free(value: object, depth: int = 0) -> object:
    """``value`` unchanged, or a ValueError if any string in it holds a NUL character.

    A NUL cannot cross into the operating system (``execve`` arguments, environment, paths)
    nor into PostgreSQL text, so a spec holding one would be accepted and then fail on every
    launch or write; it is refused where it enters instead. Nested models check themselves.
    """
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("contains a NUL character (\\x00); no string in a spec may")
    elif isinstance(value, dict) and depth < 8:
        for key, item in value.items():
            nul_free(key, depth + 1)
            nul_free(item, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset) and depth < 8:
        for item in value:
            nul_free(item, depth + 1)
    return value


class SpecModel(BaseModel):
    """Base of every model a user writes: strict about unknown fields, immutable once read."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        return nul_free(value)
