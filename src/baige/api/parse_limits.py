"""Reading YAML and JSON that strangers wrote, within limits that hold whatever they wrote.

A spec is a few dozen nodes a handful of levels deep; anything far beyond that is a mistake or
an attack. PyYAML happily expands aliases (a 500-byte "billion laughs" document becomes
billions of nodes) and composes recursively (100,000 nested ``[`` exhaust the stack), and
``json.loads`` recurses the same way. So the limits are enforced *while* composing, on the event
stream, before any large or deep structure exists: an alias is refused where it appears, a
document deeper than :data:`MAX_DEPTH` or with more than :data:`MAX_NODES` nodes is refused at
the node that crosses the line, and so is a scalar longer than :data:`MAX_SCALAR`. Every refusal
names the line and the limit.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Final

import yaml
from yaml.error import Mark
from yaml.events import AliasEvent, ScalarEvent

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_SCALAR",
    "LimitExceeded",
    "YamlDocument",
    "check_json_depth",
    "load_json",
    "read_yaml",
]

MAX_DEPTH: Final = 64
"""Nesting levels of mappings and lists; the deepest real spec has about six."""
MAX_NODES: Final = 20_000
"""Nodes (keys, values, items) in one text; a spec has tens, a large simulation scenario a
few hundred. Pure-Python YAML composes some 30,000 nodes a second, so this also bounds the time
a hostile text costs."""
MAX_SCALAR: Final = 256 * 1024
"""Characters in one scalar: twice Linux's limit on one command-line argument (128 KiB)."""


class LimitExceeded(yaml.MarkedYAMLError):
    """The text crosses one of the limits; ``problem_mark`` is where."""

    def __init__(self, message: str, mark: object) -> None:
        # the pure-Python loader's marks are always ``yaml.error.Mark``
        super().__init__(problem=message, problem_mark=mark if isinstance(mark, Mark) else None)


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """One non-empty document: its node tree (for line numbers) and its data."""

    node: yaml.Node
    data: object


class _LimitedLoader(yaml.SafeLoader):
    """A SafeLoader whose composer counts depth and nodes and refuses aliases as it goes."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, AliasEvent):
            raise LimitExceeded(
                f"YAML aliases (*{event.anchor}) are not allowed in specs; write the value out",
                event.start_mark,
            )
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise LimitExceeded(
                f"more than {MAX_NODES} YAML nodes; a spec is far smaller", event.start_mark
            )
        if isinstance(event, ScalarEvent) and len(event.value) > MAX_SCALAR:
            raise LimitExceeded(
                f"a value of {len(event.value)} characters; at most {MAX_SCALAR}",
                event.start_mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise LimitExceeded(
                    f"nested more than {MAX_DEPTH} levels deep; a spec is far shallower",
                    event.start_mark,
                )
            node: yaml.Node | None = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        return node


def read_yaml(text: str) -> list[YamlDocument]:
    """The non-empty documents in ``text``, each composed within the limits and then built.

    Raises :class:`yaml.YAMLError` (a :class:`LimitExceeded` for a limit, with its mark) for
    anything that cannot be read, including values YAML accepts but Python cannot build
    (an integer of 5,000 digits)."""
    loader = _LimitedLoader(text)
    documents: list[YamlDocument] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            try:
                data = loader.construct_document(node)
            except (ValueError, TypeError, OverflowError) as err:
                reason = str(err).split(";")[0]  # not Python's advice to raise its own limit
                raise LimitExceeded(f"a value cannot be read: {reason}", node.start_mark) from None
            if data is not None:
                documents.append(YamlDocument(node, data))
    finally:
        loader.dispose()
    return documents


# a string (with its escapes), or one bracket: all that matters for depth
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def check_json_depth(text: str, limit: int = MAX_DEPTH) -> None:
    """Refuse JSON nested deeper than ``limit`` before ``json.loads`` recurses into it.

    Raises :class:`json.JSONDecodeError` naming the line of the bracket that crosses the limit;
    malformed text is left for ``json.loads`` to describe."""
    depth = 0
    for match in _JSON_TOKENS.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > limit:
                raise json.JSONDecodeError(
                    f"nested more than {limit} levels deep; a spec is far shallower",
                    text,
                    match.start(),
                )
        elif token in ("]", "}"):
            depth -= 1


def load_json(text: str) -> object:
    """``json.loads`` within :data:`MAX_DEPTH`; every failure is a :class:`json.JSONDecodeError`
    or a ``ValueError`` (a 5,000-digit integer) naming the problem."""
    check_json_depth(text)
    try:
        return json.loads(text)
    except RecursionError:  # not reachable within the depth limit; kept as a last guard
        raise ValueError(f"nested too deep; at most {MAX_DEPTH} levels") from None
