"""``$(VAR)`` in a replica's arguments, expanded from its environment at launch.

Some values exist only at launch — the port Baige picked for a service replica, the replica's
index — yet belong in the command line (``vllm serve M --port $(PORT)``). Baige never runs a
shell, so it expands the one form Kubernetes users already write: ``$(NAME)`` becomes the
variable's value; ``$$(NAME)`` stays a literal ``$(NAME)``; a name the environment does not
hold is left as written (as Kubernetes does), never an empty string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

__all__ = ["expand_args"]

_REFERENCE = re.compile(r"\$\$\(([A-Za-z_][A-Za-z0-9_]*)\)|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand_args(args: Sequence[str], env: Mapping[str, str]) -> list[str]:
    def one(match: re.Match[str]) -> str:
        if match.group(1) is not None:  # $$(NAME): escaped
            return f"$({match.group(1)})"
        name = match.group(2)
        return env.get(name, match.group(0))

    return [_REFERENCE.sub(one, arg) for arg in args]
