"""The HTTP API. Thin: authenticate, read the body, call the service, shape the answer.

Every failure a client can cause is a 4xx whose body names what was wrong
(``{"error": ..., "problems": [{"field", "line", "message"}]}``); a 500 is a bug. When the
database is away (restarting, failing over) the answer is 503 with ``Retry-After``, which the
SDK and the CLI retry. The OpenAPI schema lists every status each operation may answer.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from baige import __version__
from baige.api.common import Name
from baige.api.nodes import NodeSpec
from baige.api.queues import QueueSpec
from baige.api.views import (
    EventView,
    NodeView,
    OverviewView,
    QueueView,
    ServiceLoadView,
    TokenView,
    WorkloadView,
)
from baige.api.workloads import InferenceServiceSpec, TrainingJobSpec
from baige.control.auth import Principal, authenticate, create_token, known_principal
from baige.control.errors import ApiError, Forbidden, Invalid, Unavailable
from baige.control.leadership import Role
from baige.control.runtime_reports import RuntimeEventsRequest, accept_runtime_events
from baige.control.service import ControlService
from baige.control.service_load import running_replicas, service_figures, service_load
from baige.server.batched_writes import HeartbeatBatcher, RegistrationBatcher, SubmissionBatcher
from baige.server.bodies import read_spec
from baige.server.gateway import Gateway, LoadBoard
from baige.server.guards import DataError, RequestLimits, refuse_unstorable
from baige.server.log_stream import FollowLimit, followed, stream_logs
from baige.server.metrics import MeasureLatency, make_registry
from baige.store.db import Database

__all__ = ["create_app"]

log = logging.getLogger("baige.api")
CONSOLE = Path(__file__).parent / "console"


def _spec_body(model: type[BaseModel]) -> dict[str, Any]:
    """A spec body: the model as JSON, or the same object written in YAML."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    content = {"application/json": {"schema": schema}, "application/yaml": {"schema": schema}}
    return {"requestBody": {"content": content, "required": True}}


_SPEC_MODELS: tuple[type[BaseModel], ...] = (QueueSpec, TrainingJobSpec, InferenceServiceSpec)
# Path parameters are names and ids: printable text without a slash.
Segment = Annotated[str, PathParam(min_length=1, max_length=253, pattern=r"^[^\x00-\x1f\x7f/]+$")]
RETRY_AFTER_S = 2
_bearer = HTTPBearer(auto_error=False, description="An API token: `Authorization: Bearer <token>`")
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


class Problem(BaseModel):
    """One thing wrong with a request: where (a field, a spec's line) and what."""

    model_config = ConfigDict(extra="allow")
    field: str = ""
    line: int | None = None
    message: str


class ErrorBody(BaseModel):
    """Every error the API answers: a sentence, and for invalid input the problems by field."""

    error: str
    problems: list[Problem] = []


# What the validators of ``baige.api.common.Name`` and of a phase filter accept, said in the
# schema too (the handlers check it, with messages that say what a name or phase may be).
DocumentedName = Annotated[
    Name,
    WithJsonSchema(
        {"type": "string", "pattern": r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$", "maxLength": 63}
    ),
]
_ONE_PHASE = "(?:pending|admitted|running|succeeded|failed|preempted|cancelled)"
PHASES_PATTERN = rf"^ *{_ONE_PHASE}? *(?:, *{_ONE_PHASE}? *)*$"


class ScaleRequest(BaseModel):
    replicas: int = Field(ge=0, le=100_000)

    @field_validator("replicas", mode="before")
    @classmethod
    def _a_number(cls, value: object) -> object:
        if isinstance(value, str | bool):  # 2.0 is the integer 2 in JSON; "2" and true are not
            raise ValueError("must be a number")
        return value


class TokenRequest(BaseModel):
    """One of: an admin token, a tenant's token, or a metrics token (no tenant, no admin)."""

    model_config = ConfigDict(
        strict=True,
        json_schema_extra={
            "anyOf": [
                {
                    "properties": {"admin": {"const": True}, "metrics": {"const": False}},
                    "required": ["admin"],
                },
                {
                    "properties": {"tenant": {"type": "string"}, "metrics": {"const": False}},
                    "required": ["tenant"],
                },
                {
                    "properties": {
                        "metrics": {"const": True},
                        "admin": {"const": False},
                        "tenant": {"type": "null"},
                    },
                    "required": ["metrics"],
                },
            ]
        },
    )
    name: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
    tenant: str | None = Field(
        default=None, min_length=1, max_length=63, pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$"
    )
    admin: bool = False
    metrics: bool = Field(
        default=False, description="a read-only token for a Prometheus scrape: /metrics only"
    )


class NodesRequest(BaseModel):
    nodes: list[NodeSpec] = Field(min_length=1, max_length=10_000)


class HeartbeatRequest(BaseModel):
    nodes: list[DocumentedName] = Field(min_length=1, max_length=10_000)


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    database: str
    controller_pass_seconds: float | None = Field(default=None, description="the last pass")
    controller_pass_p50_seconds: float | None = None
    controller_pass_p99_seconds: float | None = Field(
        default=None, description="over the last 1,000 passes"
    )
    controller: Role = Field(
        default="leading",
        description="this instance's controller: on PostgreSQL one `baige up` leads, the "
        "others stand by; stopped once deposed",
    )


async def current_principal(request: Request, _token: Bearer) -> Principal:
    """The caller, from its bearer token (401 without a valid one). A token seen valid in
    the last 30 s is known without a query (on the event loop: no worker-thread hop); any
    other is looked up on a worker thread, so a flood of bad tokens cannot stall the loop."""
    db, header = request.app.state.db, request.headers.get("authorization")
    known = known_principal(db, header)
    if known is not None:
        return known
    return await run_in_threadpool(authenticate, db, header)


Who = Annotated[Principal, Depends(current_principal)]


def _problems_from(error: RequestValidationError | ValidationError) -> list[dict[str, object]]:
    problems: list[dict[str, object]] = []
    for item in error.errors():
        location = [
            str(part) for part in item.get("loc", ()) if part not in ("body", "query", "path")
        ]
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append({"field": ".".join(location), "message": message})
    return problems


def server_config(app: FastAPI, **where: Any) -> uvicorn.Config:
    """How `baige up` serves ``app`` (``where``: host and port, or nothing for a socket
    handed over). Idle connections are kept 30 s, not uvicorn's 5: a client pool that reuses
    a connection the server has just closed sees a reset mid-request. On stop, open requests
    get 5 s: a followed log stream would otherwise hold the shutdown as long as its reader
    stays."""
    return uvicorn.Config(app, log_level="warning", timeout_keep_alive=30,
                          timeout_graceful_shutdown=5, **where)  # fmt: skip


def create_app(
    db: Database,
    service: ControlService,
    *,
    pass_seconds: Callable[[], list[float]] = list,
    follow_poll_s: float = 0.5,
    board: LoadBoard | None = None,
    role: Callable[[], Role] = lambda: "leading",
    figures: Callable[[], dict[str, dict[str, float]]] | None = None,
) -> FastAPI:
    """The API over ``service``; ``pass_seconds`` gives the controller's recent pass times,
    ``board`` is where the service gateway counts load (the controller's autoscaler reads it),
    ``role`` whether this instance's controller leads (``Platform.role``), ``figures`` the
    gateway's per-service figures to show (default: ``board``'s; summed over every API
    process when several run, ``Platform.load_figures``)."""
    board = board if board is not None else LoadBoard()
    load_figures = figures if figures is not None else board.figures
    gateway = Gateway(db, board)
    # Set when the server stops: a followed log stream runs in a worker thread that the
    # server's shutdown cannot cancel, and the process would wait for it at exit.
    stopping = threading.Event()
    follow_limit = FollowLimit()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        stopping.set()
        await gateway.close()

    app = FastAPI(
        title="Baige",
        version=__version__,
        description="One pool of mixed accelerators for training jobs and inference services.",
        lifespan=lifespan,
    )

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = _problems_from(error)
        first = problems[0] if problems else {"field": "", "message": "invalid request"}
        message = (
            f"{first['field']}: {first['message']}" if first["field"] else str(first["message"])
        )
        return JSONResponse({"error": message, "problems": problems}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        """Routing's own answers (404 for no such path, 405) in the API's error shape; a 405
        lists in ``Allow`` every method the path takes, over all the routes that share it."""
        headers = dict(error.headers or {})
        allowed = _allowed_methods(app, request.url.path) if error.status_code == 405 else None
        if allowed:
            headers["Allow"] = ", ".join(allowed)
        if error.status_code in (204, 304):
            return Response(status_code=error.status_code, headers=headers)
        return JSONResponse({"error": str(error.detail)}, error.status_code, headers=headers)

    async def database_away(_request: Request, error: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", str(error).splitlines()[0] if str(error) else error)
        body = Unavailable("the database is unavailable; retry").body()
        headers = {"Retry-After": str(RETRY_AFTER_S)}
        return JSONResponse(body, status_code=503, headers=headers)

    async def database_error(request: Request, error: Exception) -> JSONResponse:
        if isinstance(error, DBAPIError) and error.connection_invalidated:
            return await database_away(request, error)
        raise error

    app.add_exception_handler(OperationalError, database_away)
    app.add_exception_handler(InterfaceError, database_away)
    app.add_exception_handler(DBAPIError, database_error)

    app.state.db = db
    app.add_middleware(RequestLimits)  # before routing, for every endpoint
    app.add_exception_handler(DataError, refuse_unstorable)
    registry, latency = make_registry(service, pass_seconds, load_figures)

    app.add_middleware(MeasureLatency, latency=latency)

    @app.get("/", include_in_schema=False)
    def console() -> FileResponse:
        """The web console (its scripts and styles are served from here too: no CDN)."""
        return FileResponse(CONSOLE / "index.html")

    app.mount("/console", StaticFiles(directory=CONSOLE), name="console")

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    def metrics(request: Request, _token: Bearer) -> Response:
        """Prometheus metrics: cards, queues, workloads, controller pass time, API latency.
        They name every tenant's queues and jobs: an admin token or a metrics token (made
        with ``"metrics": true``) may read them, a tenant's token is refused (403)."""
        who = authenticate(db, request.headers.get("authorization"), for_metrics=True)
        if not (who.admin or who.metrics):
            raise Forbidden("only an admin token or a metrics token may read /metrics")
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["health"])
    def healthz() -> Health:
        """Liveness and the controller's last pass time; no token needed."""
        recent = sorted(pass_seconds())
        controller = role()
        if not recent:
            return Health(
                status="ok", version=__version__, database=db.dialect, controller=controller
            )
        return Health(
            status="ok",
            version=__version__,
            database=db.dialect,
            controller=controller,
            controller_pass_seconds=pass_seconds()[-1],
            controller_pass_p50_seconds=recent[len(recent) // 2],
            controller_pass_p99_seconds=recent[
                min(len(recent) - 1, round(0.99 * (len(recent) - 1)))
            ],
        )

    v1 = APIRouter(prefix="/v1")

    # -- queues --------------------------------------------------------------------------

    @v1.get("/queues", tags=["queues"])
    def list_queues(who: Who) -> list[QueueView]:
        """The queue tree with guaranteed, limit and used cards per accelerator type."""
        return service.list_queues(who)

    @v1.post("/queues", tags=["queues"], status_code=201, openapi_extra=_spec_body(QueueSpec))
    async def apply_queue(request: Request, who: Who) -> QueueView:
        """Create or replace a queue (admin)."""
        if not who.admin:
            raise Forbidden("only an admin token may change queues")
        spec = await read_spec(request, (QueueSpec,), "Queue")
        assert isinstance(spec, QueueSpec)
        return await run_in_threadpool(service.apply_queue, who, spec)  # off the loop

    @v1.delete("/queues/{name}", tags=["queues"], status_code=204)
    def delete_queue(name: Segment, who: Who) -> None:
        service.delete_queue(who, name)

    # -- nodes ---------------------------------------------------------------------------

    @v1.get("/nodes", tags=["nodes"])
    def list_nodes(
        who: Who,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
        offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    ) -> list[NodeView]:
        return service.list_nodes(who, limit=limit, offset=offset)

    registrations = RegistrationBatcher(service)
    submissions = SubmissionBatcher(service)
    heartbeats = HeartbeatBatcher(service)

    @v1.post("/nodes", tags=["nodes"], status_code=201)
    async def register_nodes(body: NodesRequest, who: Who) -> dict[str, int]:
        """Register (or update) nodes; registering counts as a heartbeat (admin).
        Concurrent registrations are written together, in one transaction."""
        service.check_registration(who, body.nodes)
        return {"registered": await registrations.register(who, body.nodes)}

    @v1.post("/nodes/heartbeat", tags=["nodes"])
    async def heartbeat(body: HeartbeatRequest, who: Who) -> dict[str, int]:
        """Node agents call this every few seconds; silence for 10 s fails the node. The
        registered nodes named are marked alive (with other requests' in one write); 404
        names any that is not registered (admin)."""
        if not who.admin:
            raise Forbidden("only an admin token may send heartbeats")
        return {"nodes": await heartbeats.beat(list(body.nodes))}

    @v1.get("/nodes/{name}", tags=["nodes"])
    def get_node(name: Segment, who: Who) -> NodeView:
        return service.get_node(who, name)

    @v1.post("/nodes/{name}/cordon", tags=["nodes"])
    def cordon(name: Segment, who: Who) -> NodeView:
        """Stop placing new work on the node; what runs there keeps running (admin)."""
        return service.set_cordon(who, name, True)

    @v1.post("/nodes/{name}/drain", tags=["nodes"])
    def drain(name: Segment, who: Who) -> NodeView:
        """Cordon the node and move what runs there to other nodes (admin)."""
        return service.drain(who, name)

    @v1.post("/nodes/{name}/uncordon", tags=["nodes"])
    def uncordon(name: Segment, who: Who) -> NodeView:
        return service.set_cordon(who, name, False)

    @v1.get("/nodes/{name}/events", tags=["nodes"])
    def node_events(name: Segment, who: Who) -> list[EventView]:
        return service.events(who, "node", name)

    # -- workloads -----------------------------------------------------------------------

    def with_load(views: list[WorkloadView]) -> list[WorkloadView]:
        """Services with their replicas running and the gateway's figures now (the console's
        list shows both): this process's board, or every API process's summed."""
        ids = [view.id for view in views if view.kind == "InferenceService"]
        if not ids:
            return views
        figures = load_figures()
        with db.session() as session:
            running = running_replicas(session, ids)
        return [
            view.model_copy(update={"load": service_figures(figures.get(view.id)),
                                    "replicas_running": running.get(view.id, 0)})
            if view.kind == "InferenceService"
            else view
            for view in views
        ]  # fmt: skip

    def workload_routes(
        path: str, kind: str, spec_type: type[TrainingJobSpec | InferenceServiceSpec], tag: str
    ) -> None:
        what = spec_type.model_fields["kind"].default

        body = _spec_body(spec_type)

        @v1.post(f"/{path}", tags=[tag], status_code=201, name=f"submit_{path}", openapi_extra=body)
        async def submit(
            request: Request,
            who: Who,
            idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
        ) -> WorkloadView:
            """Submit a spec (JSON or YAML). With an ``Idempotency-Key`` header, a retry of the
            same request returns the first submission instead of a duplicate. Concurrent
            submissions are stored together, in one transaction."""
            spec = await read_spec(request, (spec_type,), what)
            assert isinstance(spec, TrainingJobSpec | InferenceServiceSpec)
            return (await submissions.submit((who, spec, idempotency_key)))[0]

        @v1.get(f"/{path}", tags=[tag], name=f"list_{path}")
        def list_(
            who: Who,
            queue: Annotated[str | None, Query(pattern=r"^[^\x00-\x1f\x7f]*$")] = None,
            phase: Annotated[
                str | None,
                Query(
                    description="one or more, comma-separated",
                    json_schema_extra={"pattern": PHASES_PATTERN},
                ),
            ] = None,
            limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
            offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
        ) -> list[WorkloadView]:
            return with_load(service.list_workloads(who, kind=kind, queue=queue, phase=phase,
                                                    limit=limit, offset=offset))  # fmt: skip

        @v1.get(f"/{path}/{{workload_id}}", tags=[tag], name=f"get_{path}")
        def get(workload_id: Segment, who: Who) -> WorkloadView:
            return with_load([service.get(who, workload_id, kind)])[0]

        @v1.post(f"/{path}/{{workload_id}}/cancel", tags=[tag], name=f"cancel_{path}")
        def cancel(workload_id: Segment, who: Who) -> WorkloadView:
            service.get(who, workload_id, kind)
            return service.cancel(who, workload_id)

        @v1.get(f"/{path}/{{workload_id}}/events", tags=[tag], name=f"events_{path}")
        def events(workload_id: Segment, who: Who) -> list[EventView]:
            service.get(who, workload_id, kind)
            return service.events(who, "workload", workload_id)

        @v1.get(f"/{path}/{{workload_id}}/logs", tags=[tag], name=f"logs_{path}",
                response_class=PlainTextResponse)  # fmt: skip
        def logs(
            workload_id: Segment,
            who: Who,
            replica: Annotated[int | None, Query(ge=0, le=100_000)] = None,
            follow: bool = False,
            tail: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
        ) -> StreamingResponse:
            """The replicas' output; ``follow`` streams until the workload ends (at most
            16 followed streams per token at once)."""
            service.get(who, workload_id, kind)
            stream = stream_logs(
                service, who, workload_id, replica, follow, tail, follow_poll_s, stopping
            )
            if not follow:
                return StreamingResponse(stream, media_type="text/plain; charset=utf-8")
            release = follow_limit.acquire(who)
            return StreamingResponse(
                followed(release, stream),
                media_type="text/plain; charset=utf-8",
                background=BackgroundTask(release),  # in case the stream never started
            )

    workload_routes("jobs", "TrainingJob", TrainingJobSpec, "jobs")
    workload_routes("services", "InferenceService", InferenceServiceSpec, "services")

    @v1.post("/jobs/{workload_id}/runtime-events", tags=["jobs"])
    def runtime_events(
        request: Request, workload_id: Segment, body: RuntimeEventsRequest, _token: Bearer
    ) -> dict[str, int]:
        """Event-log lines from ``baige run`` inside the job's replicas: faults, restarts,
        recoveries. Only the job's own report token (``BAIGE_TOKEN`` in its replicas) may post
        them; any user token, an admin's too, is refused (403), so nobody can forge the
        figures the job's view and ``/metrics`` show."""
        header = request.headers.get("authorization")
        return {"accepted": accept_runtime_events(db, workload_id, header, body)}

    @v1.post("/services/{workload_id}/scale", tags=["services"])
    def scale(workload_id: Segment, body: ScaleRequest, who: Who) -> WorkloadView:
        service.get(who, workload_id, "InferenceService")
        return service.scale(who, workload_id, body.replicas)

    @v1.get("/services/{workload_id}/load", tags=["services"])
    def load(
        workload_id: Segment,
        who: Who,
        hours: Annotated[float, Query(ge=0, le=168, allow_inf_nan=False)] = 6.0,
    ) -> ServiceLoadView:
        """The service's stable endpoint, replicas wanted and running, requests per second,
        in flight and latency over the last ``hours`` (samples every 30 s, then the
        gateway's figures now), and the events that changed its size."""
        figures = load_figures().get(workload_id)
        return service_load(db, who, workload_id, hours=hours, now=service.clock(),
                            figures=figures)  # fmt: skip

    @v1.delete("/services/{workload_id}", tags=["services"])
    def delete_service(workload_id: Segment, who: Who) -> WorkloadView:
        service.get(who, workload_id, "InferenceService")
        return service.cancel(who, workload_id)

    @v1.get("/overview", tags=["overview"])
    def overview(who: Who, hours: Annotated[float, Query(ge=0, le=168)] = 6.0) -> OverviewView:
        """Cards by type and state, workloads by phase, why work waits, open faults, usage."""
        return service.overview(who, hours)

    @v1.get("/me", tags=["overview"])
    def me(who: Who) -> dict[str, object]:
        """Who the token belongs to."""
        return service.whoami(who)

    @v1.get("/events", tags=["overview"])
    def events(who: Who, limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> list[EventView]:
        """The newest events the caller may see."""
        return service.recent_events(who, limit)

    # -- tokens --------------------------------------------------------------------------

    @v1.post("/tokens", tags=["tokens"], status_code=201)
    def make_token(body: TokenRequest, who: Who) -> TokenView:
        """Make a token for a tenant, an admin token, or (``"metrics": true``) a token that
        reads /metrics and nothing else, for a Prometheus scrape (admin). It is shown once."""
        if not who.admin:
            raise Forbidden("only an admin token may make tokens")
        if body.metrics and (body.admin or body.tenant is not None):
            raise Invalid(
                "a metrics token has no tenant and is no admin token",
                [{"field": "metrics", "message": "not with admin or tenant"}],
            )
        if not body.admin and not body.metrics and body.tenant is None:
            raise Invalid(
                "a non-admin token needs a tenant", [{"field": "tenant", "message": "required"}]
            )
        token = create_token(db, body.name, body.tenant, admin=body.admin, metrics=body.metrics)
        return TokenView(name=body.name, tenant=body.tenant, admin=body.admin, token=token)

    app.include_router(v1)

    proxied = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

    @app.api_route("/s/{service}/{path:path}", methods=proxied, include_in_schema=False)
    async def gateway_route(service: str, path: str, request: Request, who: Who) -> Response:
        """A service's stable endpoint: proxied to one of its running replicas."""
        return await gateway.handle(request, who, service, path)

    @app.api_route("/s/{service}", methods=proxied, include_in_schema=False)
    async def gateway_root(service: str, request: Request, who: Who) -> Response:
        return await gateway.handle(request, who, service, "")

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method the schema lists for the paths that match ``path`` (Starlette names only
    the first matching route's, and /v1/queues has two routes: GET and POST)."""
    paths: dict[str, dict[str, object]] = app.openapi().get("paths", {})
    if path in paths:  # a literal path is its own resource (/v1/nodes/heartbeat)
        return sorted(method.upper() for method in paths[path])
    methods: set[str] = set()
    for template, operations in paths.items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            methods |= {method.upper() for method in operations}
    return sorted(methods)


# Statuses every operation may answer beyond its own success: 400 (a control character in the
# path or query, an invalid parameter or body), 503 (the database is away); with a token,
# 401/403/404; with a body, 413; and a few that only some operations give.
_OPEN = {"/healthz"}
_EXTRA_STATUSES: dict[tuple[str, str], tuple[int, ...]] = {
    ("delete", "/v1/queues/{name}"): (409,),
    ("post", "/v1/jobs"): (409,),
    ("post", "/v1/services"): (409,),
    ("post", "/v1/jobs/{workload_id}/cancel"): (409,),
    ("post", "/v1/services/{workload_id}/cancel"): (409,),
    ("delete", "/v1/services/{workload_id}"): (409,),
    ("post", "/v1/services/{workload_id}/scale"): (409,),
    ("get", "/v1/jobs/{workload_id}/logs"): (429,),
    ("get", "/v1/services/{workload_id}/logs"): (429,),
}
_DESCRIPTIONS = {
    400: "Invalid request: the problems name each field (and a spec's line)",
    401: "No valid bearer token",
    403: "The token may not do this",
    404: "Not found (or not visible to this token)",
    409: "Conflicts with the current state",
    413: "The body is too large",
    429: "Too many followed log streams for this token",
    503: "The database is unavailable; retry after `Retry-After` seconds",
}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with the errors each operation really answers (400, not 422) in
    the API's error shape, and spec bodies described by their models."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components: dict[str, Any] = schema.setdefault("components", {}).setdefault("schemas", {})
    models: tuple[type[BaseModel], ...] = (*_SPEC_MODELS, ErrorBody)
    for model in models:
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in model_schema.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components[model.__name__] = model_schema
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    retry = {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            statuses = {400, 503, *_EXTRA_STATUSES.get((method, path), ())}
            if path not in _OPEN:
                statuses |= {401, 403, 404}
            if "requestBody" in operation:
                statuses.add(413)
            for status in sorted(statuses):
                answer: dict[str, Any] = {"description": _DESCRIPTIONS[status], "content": error}
                if status == 503:
                    answer["headers"] = retry
                responses.setdefault(str(status), answer)
    app.openapi_schema = schema
    return schema
