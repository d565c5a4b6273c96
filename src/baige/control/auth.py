"""Bearer tokens and tenants.

Only a token's SHA-256 is stored. The admin token is made on first start, written to a file
only its owner can read, and printed once. A tenant's token sees and submits to its own
queues only; asking for another tenant's object answers 404, so existence never leaks.
A metrics token (``baige token prometheus --metrics``) reads ``/metrics`` and nothing else:
what a Prometheus scrape config carries, so that the figures of every tenant are not open to
anyone who can reach the port.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from baige.control.errors import Forbidden, Unauthorized
from baige.store.db import Database
from baige.store.tables import TokenRow

__all__ = ["Principal", "authenticate", "create_token", "ensure_admin_token"]

TOKEN_PREFIX = "baige_"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an admin (sees everything), a tenant, or a metrics scraper."""

    name: str
    tenant: str | None
    admin: bool
    metrics: bool = False

    def sees(self, tenant: str | None) -> bool:
        return self.admin or (tenant is not None and tenant == self.tenant)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    db: Database, name: str, tenant: str | None, *, admin: bool = False, metrics: bool = False
) -> str:
    """Make a token and return it; it cannot be shown again."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with db.session() as session:
        session.add(
            TokenRow(
                id=secrets.token_hex(8),
                name=name,
                tenant=tenant,
                admin=admin,
                metrics=metrics,
                token_hash=_hash(token),
                created_at=time.time(),
            )
        )
    return token


_CACHE_S = 30.0
_known: dict[tuple[int, str], tuple[Principal, float]] = {}


def known_principal(db: Database, header: str | None) -> Principal | None:
    """The principal for a token :func:`authenticate` found valid in the last 30 s, without
    touching the database (so an async endpoint can check it on the event loop); None when
    :func:`authenticate` must look (or refuse)."""
    if not header or not header.lower().startswith("bearer "):
        return None
    known = _known.get((id(db), _hash(header[7:].strip())))
    if known is None or known[1] <= time.monotonic() or known[0].metrics:
        return None
    return known[0]


def authenticate(db: Database, header: str | None, *, for_metrics: bool = False) -> Principal:
    """The principal for an ``Authorization: Bearer ...`` header, or 401.

    A metrics token is refused (403) everywhere but where ``for_metrics`` says the caller
    serves ``/metrics``.

    A token found valid is remembered for 30 s, sparing the database one query per request
    (tokens are never revoked within that window: there is no revocation yet)."""
    if not header or not header.lower().startswith("bearer "):
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    digest = _hash(header[7:].strip())
    key = (id(db), digest)
    known = _known.get(key)
    if known is not None and known[1] > time.monotonic():
        principal = known[0]
    else:
        with db.session() as session:
            row = session.scalars(select(TokenRow).where(TokenRow.token_hash == digest)).first()
        if row is None:
            raise Unauthorized("invalid token")
        principal = Principal(row.name, row.tenant, row.admin, metrics=bool(row.metrics))
        if len(_known) > 10_000:
            _known.clear()
        _known[key] = (principal, time.monotonic() + _CACHE_S)
    if principal.metrics and not for_metrics:
        raise Forbidden("a metrics token can read /metrics and nothing else")
    return principal


def ensure_admin_token(db: Database, path: Path) -> str | None:
    """On first start, make the admin token and save it (mode 600) at ``path``.

    Returns the new token (to print once), or None when an admin token already exists.
    """
    with db.session() as session:
        exists = session.scalars(select(TokenRow.id).where(TokenRow.admin.is_(True))).first()
    if exists is not None:
        return None
    token = create_token(db, "admin", None, admin=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    os.chmod(path, 0o600)
    return token
