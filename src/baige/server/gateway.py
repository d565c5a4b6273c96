"""The service gateway: one stable endpoint per service, in front of its replicas.

Replica ports change with every drain, rescale and restart; a client needs one address that
does not. ``/s/{service}/{path}`` on the API's own port (``service`` is the id, or the name
among the caller's services) proxies any HTTP request to one of the service's running
replicas:

* least outstanding requests: the replica with the fewest requests in flight through the
  gateway gets the next one (ties go round-robin);
* streaming passes through unbuffered, chunk by chunk (server-sent events, as LLM servers
  stream tokens);
* a replica that refuses the connection is taken out of rotation for a few seconds and the
  request is retried on another (nothing reached the first one, so a retry is safe for
  every method);
* a replica the controller has stopped wanting (scale-down, drain) gets no new requests
  (after at most ``ENDPOINTS_TTL_S``, the replica list's cache); the controller stops it
  only once the requests it is serving have finished (``LoadBoard.replica_in_flight``), or
  after its drain timeout;
* tenancy: the caller's Baige token must see the service (the ``Authorization`` header is
  Baige's and is not passed on).

Every request is counted in the :class:`LoadBoard` — requests per second, in flight,
latency — which the controller's autoscaler reads (same process today; a store-backed board
is what the split control plane will need).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from sqlalchemy import select
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from baige.api.workloads import Phase
from baige.backends.base import ReplicaState
from baige.control.auth import Principal
from baige.control.errors import ApiError, Conflict, NotFound
from baige.control.load_board import LoadBoard
from baige.store.db import Database
from baige.store.tables import ReplicaRow, WorkloadRow

__all__ = ["Gateway", "LoadBoard", "ServiceUnavailable"]  # LoadBoard re-exported

DOWN_S = 5.0  # a replica that refused a connection is skipped this long
ENDPOINTS_TTL_S = 1.0  # how long the replica list of a service is cached
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length", "authorization",
}  # fmt: skip


class ServiceUnavailable(ApiError):
    status = 503


class TooManyRequests(ApiError):
    status = 429


@dataclass(frozen=True, slots=True)
class _Endpoint:
    replica_id: str
    url: str


class Gateway:
    """Routes ``/s/{service}/…`` requests to the service's replicas."""

    def __init__(
        self,
        db: Database,
        board: LoadBoard,
        *,
        timeout_s: float = 300.0,
        per_tenant: int = 256,
    ) -> None:
        self.db = db
        self.board = board
        # a large pool that is never waited on for long: a tenant's slow replicas must not
        # hold the connections every other tenant's requests need
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=2.0, pool=2.0),
            limits=httpx.Limits(max_connections=4096, max_keepalive_connections=512),
        )
        self.per_tenant = per_tenant  # requests in flight through the gateway per tenant
        self._tenant_in_flight: dict[str, int] = {}
        self._cache: dict[str, tuple[float, str, str | None, list[_Endpoint]]] = {}
        self._outstanding: dict[str, int] = {}
        self._down: dict[str, float] = {}
        self._turn = itertools.count()

    async def close(self) -> None:
        await self.http.aclose()

    def _lookup(self, who: Principal, ref: str) -> tuple[str, str | None, list[_Endpoint]]:
        """(service id, its tenant, endpoints of its running replicas), read from the store."""
        with self.db.session() as session:
            row = session.get(WorkloadRow, ref)
            if row is None or row.kind != "InferenceService":
                named = [
                    r
                    for r in session.scalars(
                        select(WorkloadRow).where(
                            WorkloadRow.name == ref,
                            WorkloadRow.kind == "InferenceService",
                            WorkloadRow.phase.in_((Phase.ADMITTED.value, Phase.RUNNING.value)),
                        )
                    )
                    if who.sees(r.tenant)
                ]
                if len(named) > 1:
                    raise Conflict(
                        f"{len(named)} running services are named {ref!r}; use the id "
                        f"({', '.join(sorted(r.id for r in named))})"
                    )
                row = named[0] if named else None
            if row is None or not who.sees(row.tenant):
                raise NotFound(f"no service {ref!r}")
            replicas = session.scalars(
                select(ReplicaRow).where(
                    ReplicaRow.workload_id == row.id,
                    ReplicaRow.desired == "running",
                    ReplicaRow.state == ReplicaState.RUNNING.value,
                    ReplicaRow.port.is_not(None),
                )
            )
            endpoints = [_Endpoint(r.id, f"http://127.0.0.1:{r.port}") for r in replicas]
            return row.id, row.tenant, endpoints

    async def _endpoints(self, who: Principal, ref: str) -> tuple[str, str | None, list[_Endpoint]]:
        now = time.monotonic()
        key = f"{who.name}\0{who.tenant}\0{ref}"  # a name means different services to each caller
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < ENDPOINTS_TTL_S and who.sees(cached[2]):
            return cached[1], cached[2], cached[3]
        service_id, tenant, endpoints = await run_in_threadpool(self._lookup, who, ref)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now, service_id, tenant, endpoints)
        self.board.set_ready(service_id, len(endpoints))
        return service_id, tenant, endpoints

    def _choose(self, endpoints: list[_Endpoint], tried: set[str]) -> _Endpoint | None:
        now = time.monotonic()
        usable = [
            e for e in endpoints if e.replica_id not in tried and self._down.get(e.url, 0) <= now
        ]
        if not usable:
            return None
        turn = next(self._turn)
        order = {e.url: (i - turn) % len(usable) for i, e in enumerate(usable)}
        return min(usable, key=lambda e: (self._outstanding.get(e.url, 0), order[e.url]))

    async def handle(self, request: Request, who: Principal, ref: str, path: str) -> Response:
        service_id, tenant, endpoints = await self._endpoints(who, ref)
        if not endpoints:
            raise ServiceUnavailable(f"service {ref!r} has no running replica yet; retry")
        owner = tenant or "admin"
        if self._tenant_in_flight.get(owner, 0) >= self.per_tenant:
            raise TooManyRequests(
                f"{self.per_tenant} requests of tenant {owner!r} are already in flight through "
                "the gateway; retry when some have finished"
            )
        self._tenant_in_flight[owner] = self._tenant_in_flight.get(owner, 0) + 1
        try:
            response = await self._forward(request, service_id, endpoints, ref, path, owner)
        except BaseException:
            self._tenant_done(owner)
            raise
        return response

    def _tenant_done(self, owner: str) -> None:
        left = self._tenant_in_flight.get(owner, 1) - 1
        if left <= 0:
            self._tenant_in_flight.pop(owner, None)
        else:
            self._tenant_in_flight[owner] = left

    async def _forward(
        self,
        request: Request,
        service_id: str,
        endpoints: list[_Endpoint],
        ref: str,
        path: str,
        owner: str,
    ) -> Response:
        body = await request.body()
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP]
        since = self.board.started(service_id)
        tried: set[str] = set()
        while True:
            endpoint = self._choose(endpoints, tried)
            if endpoint is None:
                self.board.finished(service_id, since, ok=False)
                raise ServiceUnavailable(
                    f"no replica of {ref!r} accepted the connection ({len(tried)} tried); retry"
                )
            tried.add(endpoint.replica_id)
            url = f"{endpoint.url}/{path}"
            if request.url.query:
                url += f"?{request.url.query}"
            upstream = self.http.build_request(request.method, url, headers=headers, content=body)
            self._outstanding[endpoint.url] = self._outstanding.get(endpoint.url, 0) + 1
            self.board.replica_busy(endpoint.replica_id, 1)
            try:
                response = await self.http.send(upstream, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                self._release(endpoint)
                self._down[endpoint.url] = time.monotonic() + DOWN_S
                continue
            except httpx.PoolTimeout:
                self._release(endpoint)
                self.board.finished(service_id, since, ok=False)
                raise ServiceUnavailable("the gateway is at its connection limit; retry") from None
            except httpx.HTTPError as err:
                self._release(endpoint)
                self.board.finished(service_id, since, ok=False)
                raise ServiceUnavailable(f"replica {endpoint.replica_id} failed: {err}") from None
            break

        done = asyncio.Event()

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            finally:
                await finish()

        async def finish() -> None:
            if done.is_set():
                return
            done.set()
            await response.aclose()
            self._release(endpoint)
            self._tenant_done(owner)
            self.board.finished(service_id, since, ok=response.status_code < 500)

        # raw bytes pass through, so content-encoding stays as the replica set it
        passed = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP}
        passed["x-baige-replica"] = endpoint.replica_id
        return StreamingResponse(
            relay(),
            status_code=response.status_code,
            headers=passed,
            background=BackgroundTask(finish),
        )

    def _release(self, endpoint: _Endpoint) -> None:
        self.board.replica_busy(endpoint.replica_id, -1)
        left = self._outstanding.get(endpoint.url, 1) - 1
        if left <= 0:
            self._outstanding.pop(endpoint.url, None)
        else:
            self._outstanding[endpoint.url] = left
