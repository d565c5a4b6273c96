"""Field types shared by every spec: names, labels, accelerator types, the strict base model.

Specs are written by people; unknown fields are rejected (``extra="forbid"``) because a typo
such as ``replica: 4`` silently ignored would run the wrong job.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from baige.hw.catalog import UnknownAcceleratorError, get_chip

__all__ = [
    "AcceleratorType",
    "Labels",
    "Name",
    "SpecModel",
    "normalize_accelerator_type",
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
Labels = Annotated[dict[str, str], Field(default_factory=dict)]


class SpecModel(BaseModel):
    """Base of every model a user writes: strict about unknown fields, immutable once read."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)
