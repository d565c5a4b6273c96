"""Which Unix user runs a tenant's replicas, and the environment they start with.

A replica that runs as the control plane's own user can read everything the control plane
can: the admin token, the database, other tenants' run directories. So when ``baige up``
runs as root, each tenant's replicas run as an unprivileged user of their own: by default
``baige-<tenant>`` (the admin token's workloads, tenant ``admin``, as ``baige-admin``),
created on first use as a system user without a login shell, whose HOME is
``<home>/tenants/<tenant>`` (owned by that user, mode 700). The operator may map a tenant
to an existing user (``--tenant-user team-a=alice``) or every tenant to one
(``--tenant-user '*=nobody'``); mapping to ``root`` is allowed only explicitly.

A replica's environment is built from nothing, never inherited from the control plane
(which may hold an admin token or a database URL): PATH, LANG, HOME, USER, LOGNAME, then
what Baige and the job's spec set.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_PATH",
    "Identity",
    "TenantUsers",
    "clean_env",
    "own_identity",
    "parse_tenant_users",
    "reachable_by_others",
    "replica_path",
]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NOLOGIN = "/usr/sbin/nologin"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a replica runs as; ``uid`` None: as the control plane's own user."""

    user: str
    home: str
    uid: int | None = None
    gid: int | None = None


def parse_tenant_users(items: list[str]) -> dict[str, str]:
    """``TENANT=USER`` pairs (``*`` for every tenant) into a mapping."""
    mapping: dict[str, str] = {}
    for item in items:
        tenant, sep, user = item.partition("=")
        if not sep or not tenant.strip() or not user.strip():
            raise ValueError(f"--tenant-user {item!r}: write TENANT=USER (or '*=USER')")
        mapping[tenant.strip()] = user.strip()
    return mapping


def _user_name(tenant: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in tenant.lower())
    return f"baige-{safe}"[:32]


class TenantUsers:
    """The tenant → Unix user mapping, with each tenant's HOME under ``tenants``."""

    def __init__(self, tenants: Path, mapping: Mapping[str, str] | None = None) -> None:
        self.tenants = tenants
        self.mapping = dict(mapping or {})
        self._lock = threading.Lock()
        self._known: dict[str, Identity] = {}

    def user_for(self, tenant: str) -> str:
        tenant = tenant or "admin"
        return self.mapping.get(tenant) or self.mapping.get("*") or _user_name(tenant)

    def identity(self, tenant: str) -> Identity:
        """The tenant's user (created if it is a default ``baige-*`` user that is missing)
        and its HOME; raises OSError when neither exists nor can be made."""
        tenant = tenant or "admin"
        with self._lock:
            known = self._known.get(tenant)
            if known is not None:
                return known
            name = self.user_for(tenant)
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                if name != _user_name(tenant):
                    raise OSError(
                        f"user {name!r} (mapped from tenant {tenant!r}) does not exist"
                    ) from None
                entry = self._create(name)
            home = self.tenants / "".join(c if c.isalnum() or c in "-_." else "-" for c in tenant)
            self.tenants.mkdir(parents=True, exist_ok=True)
            self.tenants.chmod(0o711)
            home.mkdir(exist_ok=True)
            os.chown(home, entry.pw_uid, entry.pw_gid)
            home.chmod(0o700)
            identity = Identity(name, str(home), entry.pw_uid, entry.pw_gid)
            self._known[tenant] = identity
            return identity

    @staticmethod
    def _create(name: str) -> pwd.struct_passwd:
        useradd = shutil.which("useradd")
        if useradd is None:
            raise OSError(f"user {name!r} does not exist and useradd is not installed")
        shell = NOLOGIN if Path(NOLOGIN).exists() else "/bin/false"
        done = subprocess.run(
            [useradd, "--system", "--no-create-home", "--user-group", "--shell", shell, name],
            capture_output=True,
            text=True,
            check=False,
        )
        with contextlib.suppress(KeyError):  # made meanwhile by another process: fine
            return pwd.getpwnam(name)
        raise OSError(f"cannot create user {name!r}: {done.stderr.strip() or done.returncode}")


def own_identity() -> Identity:
    """The control plane's own user, for a backend that does not switch users."""
    try:
        entry = pwd.getpwuid(os.getuid())
        return Identity(entry.pw_name, os.environ.get("HOME") or entry.pw_dir)
    except KeyError:
        return Identity(str(os.getuid()), os.environ.get("HOME", "/"))


def reachable_by_others(directory: str) -> bool:
    """Whether any user may search ``directory`` (every folder on its path has o+x): what
    a replica switched to another user can use of the control plane's PATH."""
    path = Path(directory)
    if not path.is_absolute():
        return False
    try:
        return all(part.stat().st_mode & stat.S_IXOTH for part in (path, *path.parents))
    except OSError:
        return False


def replica_path(identity: Identity) -> str:
    """The control plane's PATH, less (for a replica switched to another user) the folders
    that user cannot enter — a Python installed under /root (pyenv) would otherwise shadow
    the system's with one the replica cannot run."""
    inherited = os.environ.get("PATH") or DEFAULT_PATH
    if identity.uid is None or identity.uid == os.getuid():
        return inherited
    kept = [d for d in inherited.split(os.pathsep) if d and reachable_by_others(d)]
    return os.pathsep.join(dict.fromkeys(kept)) or DEFAULT_PATH


def clean_env(identity: Identity, job_env: Mapping[str, str]) -> dict[str, str]:
    """A replica's environment: the basics, then what Baige and the spec set."""
    env = {
        "PATH": replica_path(identity),
        "LANG": os.environ.get("LANG") or "C.UTF-8",
        "HOME": identity.home,
        "USER": identity.user,
        "LOGNAME": identity.user,
    }
    env.update(job_env)
    return env
