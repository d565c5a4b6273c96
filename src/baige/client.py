"""A Python SDK for the Baige API (the CLI is built on it).

    from baige.client import BaigeClient
    client = BaigeClient()                      # BAIGE_URL / BAIGE_TOKEN, or the local admin token
    job = client.submit_file("examples/train-cpu.yaml")[0]
    print(client.job(job.id).phase)

Errors come back as :class:`BaigeError` carrying the server's message and, for invalid
specs, the problems by field and line.

A call that is safe to repeat is retried, with backoff, for up to ``retry_s`` seconds (30 by
default) while the control plane answers 503 (its database is restarting or failing over) or
cannot be reached after it has answered once (``baige up`` restarting): reads, cancel, cordon,
uncordon, drain, scale, applying a queue or a node (each sets a state; twice is once), and
submissions, which carry one ``Idempotency-Key`` per logical submission, reused on every
retry, so a retry never makes a second job. Making a token is never retried. A server that
never answered fails at once: most likely nothing listens there.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from baige.api.loader import AnySpec, load_spec_file
from baige.api.nodes import NodeSpec
from baige.api.views import EventView, NodeView, QueueView, TokenView, WorkloadView
from baige.api.workloads import InferenceServiceSpec, TrainingJobSpec
from baige.store.db import home_dir

__all__ = ["DEFAULT_URL", "BaigeClient", "BaigeError"]

DEFAULT_URL = "http://127.0.0.1:8080"
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class BaigeError(Exception):
    """The API refused a request (or could not be reached)."""

    def __init__(self, message: str, status: int | None = None, problems: list[Any] | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.problems = problems or []

    def __str__(self) -> str:
        lines = [self.message]
        for problem in self.problems:
            where = problem.get("source") or ""
            if problem.get("line"):
                where = f"{where}:{problem['line']}" if where else f"line {problem['line']}"
            field = problem.get("field") or ""
            prefix = ": ".join(p for p in (where, field) if p)
            lines.append(
                f"  {prefix}: {problem.get('message')}" if prefix else f"  {problem.get('message')}"
            )
        return "\n".join(lines)


def _default_token() -> str | None:
    token = os.environ.get("BAIGE_TOKEN")
    if token:
        return token.strip()
    path = home_dir() / "admin-token"
    try:
        return path.read_text().strip()
    except OSError:
        return None


class BaigeClient:
    """Talks to one Baige control plane."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        *,
        retry_s: float = 30.0,
    ):
        given = url or os.environ.get("BAIGE_URL") or DEFAULT_URL
        # several control planes on one database (a leader and standbys), comma-separated:
        # a call that cannot reach one goes to the next
        self.urls = [u.strip().rstrip("/") for u in given.split(",") if u.strip()] or [DEFAULT_URL]
        self.url = self.urls[0]
        self.token = token if token is not None else _default_token()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self.retry_s = retry_s
        self._reached = False  # the server has answered once: later silence is a restart

    def close(self) -> None:
        self.http.close()

    def _use(self, url: str) -> None:
        """Talk to another of the control planes from now on."""
        self.url = url
        self.http.base_url = httpx.URL(url)

    def __enter__(self) -> BaigeClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, *, retry: bool | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One call; ``retry`` (default: for idempotent methods) repeats it with backoff
        while the answer is 503 or the server, once reached, cannot be reached."""
        if retry is None:
            retry = method in _IDEMPOTENT
        deadline = time.monotonic() + self.retry_s
        pause = 0.2
        tried = 0  # other URLs tried since the last pause
        while True:
            wait: float | None = None
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as err:
                # A refused connection never reached the server: safe to repeat for any call.
                unsent = isinstance(err, httpx.ConnectError | httpx.ConnectTimeout)
                if (retry or unsent) and tried < len(self.urls) - 1:
                    tried += 1
                    self._use(self.urls[(self.urls.index(self.url) + 1) % len(self.urls)])
                    continue
                if not (self._reached and (retry or unsent)) or time.monotonic() > deadline:
                    self._reached = False  # gone for good: the next call fails at once
                    kind = err.__class__.__name__
                    raise BaigeError(
                        f"cannot reach Baige at {', '.join(self.urls)} ({kind}); "
                        "is `baige up` running?"
                    ) from None
            else:
                self._reached = True
                if not (retry and response.status_code == 503):
                    break
                if time.monotonic() > deadline:
                    break
                wait = _retry_after(response)
            time.sleep(min(max(wait or 0.0, pause), 5.0))  # the server's word, backed off
            pause = min(pause * 2, 2.0)
            tried = 0
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"error": response.text or response.reason_phrase}
            raise BaigeError(
                str(body.get("error", response.reason_phrase)),
                response.status_code,
                body.get("problems"),
            )
        return response

    def _get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self._request("GET", path, params=clean).json()

    # -- workloads -----------------------------------------------------------------------

    def submit(
        self,
        spec: TrainingJobSpec | InferenceServiceSpec,
        *,
        idempotency_key: str | None = None,
    ) -> WorkloadView:
        """Submit a job or a service. A retry with the same key never makes a duplicate."""
        path = "/v1/jobs" if isinstance(spec, TrainingJobSpec) else "/v1/services"
        key = idempotency_key or secrets.token_hex(16)  # one per submission, kept on retry
        body = spec.model_dump(mode="json")
        response = self._request(
            "POST", path, retry=True, json=body, headers={"Idempotency-Key": key}
        )
        return WorkloadView.model_validate(response.json())

    def submit_file(self, path: str | Path, *, idempotency_key: str | None = None) -> list[Any]:
        """Every spec in a YAML file, each sent where its kind belongs. Jobs and services
        without ``working_dir`` run in the current directory."""
        results: list[Any] = []
        for index, spec in enumerate(load_spec_file(path)):
            results.append(
                self.apply(
                    spec, idempotency_key=f"{idempotency_key}-{index}" if idempotency_key else None
                )
            )
        return results

    def apply(self, spec: AnySpec, *, idempotency_key: str | None = None) -> Any:
        if isinstance(spec, TrainingJobSpec | InferenceServiceSpec):
            if spec.working_dir is None:
                spec = spec.model_copy(update={"working_dir": os.getcwd()})
            return self.submit(spec, idempotency_key=idempotency_key)
        if isinstance(spec, NodeSpec):
            body = {"nodes": [spec.model_dump(mode="json")]}
            self._request("POST", "/v1/nodes", retry=True, json=body)
            return self.node(spec.name)
        if spec.kind == "Queue":
            body = spec.model_dump(mode="json")
            response = self._request("POST", "/v1/queues", retry=True, json=body)
            return QueueView.model_validate(response.json())
        raise BaigeError(f"{spec.kind} objects are not submitted through the API")

    def jobs(self, **filters: Any) -> list[WorkloadView]:
        return [WorkloadView.model_validate(x) for x in self._get("/v1/jobs", **filters)]

    def services(self, **filters: Any) -> list[WorkloadView]:
        return [WorkloadView.model_validate(x) for x in self._get("/v1/services", **filters)]

    def _path(self, workload_id: str) -> str:
        return "/v1/services" if workload_id.startswith("svc-") else "/v1/jobs"

    def job(self, workload_id: str) -> WorkloadView:
        return WorkloadView.model_validate(self._get(f"{self._path(workload_id)}/{workload_id}"))

    def cancel(self, workload_id: str) -> WorkloadView:
        response = self._request(
            "POST", f"{self._path(workload_id)}/{workload_id}/cancel", retry=True
        )
        return WorkloadView.model_validate(response.json())

    def scale(self, workload_id: str, replicas: int) -> WorkloadView:
        response = self._request(
            "POST", f"/v1/services/{workload_id}/scale", retry=True, json={"replicas": replicas}
        )
        return WorkloadView.model_validate(response.json())

    def events(self, workload_id: str) -> list[EventView]:
        return [
            EventView.model_validate(x)
            for x in self._get(f"{self._path(workload_id)}/{workload_id}/events")
        ]

    def node_events(self, name: str) -> list[EventView]:
        """What happened to a node: failures, cordons, drains (admin)."""
        return [EventView.model_validate(x) for x in self._get(f"/v1/nodes/{name}/events")]

    def logs(
        self,
        workload_id: str,
        *,
        follow: bool = False,
        replica: int | None = None,
        tail: int | None = None,
    ) -> Iterator[bytes]:
        params = {
            k: v
            for k, v in {"follow": follow, "replica": replica, "tail": tail}.items()
            if v not in (None, False)
        }
        url = f"{self._path(workload_id)}/{workload_id}/logs"
        try:
            with self.http.stream("GET", url, params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    body = response.json()
                    raise BaigeError(
                        str(body.get("error")), response.status_code, body.get("problems")
                    )
                yield from response.iter_bytes()
        except httpx.TransportError as err:
            raise BaigeError(
                f"cannot reach Baige at {self.url} ({err.__class__.__name__})"
            ) from None

    # -- cluster -------------------------------------------------------------------------

    def queues(self) -> list[QueueView]:
        return [QueueView.model_validate(x) for x in self._get("/v1/queues")]

    def nodes(self) -> list[NodeView]:
        return [NodeView.model_validate(x) for x in self._get("/v1/nodes")]

    def node(self, name: str) -> NodeView:
        return NodeView.model_validate(self._get(f"/v1/nodes/{name}"))

    def cordon(self, name: str, cordoned: bool = True) -> NodeView:
        action = "cordon" if cordoned else "uncordon"
        response = self._request("POST", f"/v1/nodes/{name}/{action}", retry=True)
        return NodeView.model_validate(response.json())

    def drain(self, name: str) -> NodeView:
        """Cordon ``name`` and move its work to other nodes."""
        response = self._request("POST", f"/v1/nodes/{name}/drain", retry=True)
        return NodeView.model_validate(response.json())

    def create_token(
        self, name: str, tenant: str | None, admin: bool = False, *, metrics: bool = False
    ) -> TokenView:
        """A token (shown once). ``metrics``: one that reads /metrics only, for Prometheus.
        Never retried: a repeat would make a second token."""
        body: dict[str, Any] = {"name": name, "tenant": tenant, "admin": admin}
        if metrics:
            body["metrics"] = True
        response = self._request("POST", "/v1/tokens", retry=False, json=body)
        return TokenView.model_validate(response.json())

    def healthz(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/healthz").json()
        return result


def _retry_after(response: httpx.Response) -> float | None:
    """The server's ``Retry-After`` in seconds (the delta form), if it sent one."""
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return None
