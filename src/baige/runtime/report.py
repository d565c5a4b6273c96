"""Reporting a run's events to the control plane that launched it.

The agent's monitoring loop must never wait on a network: events go into a bounded queue and
a background thread POSTs them in batches, retrying with backoff while the control plane is
unreachable (it may be restarting: ``baige up`` survives ``kill -9``). The event log on disk is
the record; this is a copy, so when the queue is full or the service does not know the
endpoint (an older ``baige up``), events are dropped here with one warning and stay in the
file.

The request: ``POST {BAIGE_URL}/v1/jobs/{BAIGE_WORKLOAD_ID}/runtime-events`` with
``{"replica_id", "node", "events": [...]}``, bearer ``BAIGE_TOKEN``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Mapping
from typing import Any

import httpx

__all__ = ["ControlPlaneReporter", "reporter_from_env"]

log = logging.getLogger("baige.runtime")

_GONE = frozenset({404, 405, 501})


class ControlPlaneReporter:
    """A sink for ``EventLog``: ``reporter(event)`` never blocks."""

    def __init__(
        self,
        url: str,
        workload_id: str,
        *,
        token: str | None = None,
        replica_id: str = "",
        node: str = "",
        timeout_s: float = 5.0,
        max_queue: int = 10_000,
        batch: int = 100,
    ) -> None:
        self.endpoint = f"{url.rstrip('/')}/v1/jobs/{workload_id}/runtime-events"
        self.replica_id = replica_id
        self.node = node
        self.sent = 0
        self.dropped = 0
        self.disabled: str | None = None
        self._batch = batch
        self._queue: queue.Queue[Mapping[str, Any] | None] = queue.Queue(max_queue)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout_s = timeout_s
        self._closing = threading.Event()
        self._http = httpx.Client(headers=headers, timeout=timeout_s)
        self._thread = threading.Thread(target=self._loop, name="baige-report", daemon=True)
        self._thread.start()

    def __call__(self, event: Mapping[str, Any]) -> None:
        if self.disabled is not None:
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued for up to ``timeout_s``, then drop the rest and stop."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout_s)
        self._thread.join(timeout_s)
        self._closing.set()
        self._thread.join(2 * self._timeout_s + 1)
        self._http.close()

    def _loop(self) -> None:
        backoff = 0.5
        giving_up = False
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            last = False
            while len(batch) < self._batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    last = True
                    break
                batch.append(item)
            sent = False
            while self.disabled is None and not giving_up:
                if self._post(batch):
                    sent = True
                    backoff = 0.5
                    break
                if self._closing.is_set():
                    giving_up = True
                    break
                self._closing.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            if sent:
                self.sent += len(batch)
            else:
                self.dropped += len(batch)
            if last:
                return

    def _post(self, events: list[Mapping[str, Any]]) -> bool:
        body = {"replica_id": self.replica_id, "node": self.node, "events": events}
        try:
            response = self._http.post(self.endpoint, json=body)
        except httpx.HTTPError as err:
            log.debug("control plane unreachable (%s); will retry", err)
            return False
        if response.status_code < 300:
            return True
        if response.status_code in _GONE:
            self.disabled = (
                f"the control plane does not accept runtime events ({response.status_code} "
                f"from {self.endpoint}); they stay in the event log"
            )
            log.warning("%s", self.disabled)
            return False
        if response.status_code < 500:
            self.disabled = f"the control plane refused runtime events: {response.status_code}"
            log.warning("%s %s", self.disabled, response.text[:200])
            return False
        return False


def reporter_from_env(node: str) -> ControlPlaneReporter | None:
    """A reporter when started by the control plane (``BAIGE_URL`` and
    ``BAIGE_WORKLOAD_ID`` set), else None."""
    url = os.environ.get("BAIGE_URL")
    workload = os.environ.get("BAIGE_WORKLOAD_ID")
    if not url or not workload:
        return None
    return ControlPlaneReporter(
        url,
        workload,
        token=os.environ.get("BAIGE_TOKEN") or None,
        replica_id=os.environ.get("BAIGE_REPLICA_ID", ""),
        node=node,
    )
