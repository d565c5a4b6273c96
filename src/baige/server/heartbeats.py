"""Group commit for node heartbeats: many requests, one statement.

10,000 node agents beating every 10 s are 1,000 requests a second, each of which marks a
few rows. One transaction per request (and one worker-thread hop to run it) costs more than
the rest of the request; here the requests that arrive while one write is under way wait
for the next, which marks all their nodes at once (``ControlService.mark_alive``). A lone
request is written at once, so an idle API adds no delay; a request's answer still comes
only after its nodes are marked, and names the nodes that are not registered (404).
"""

from __future__ import annotations

import asyncio

from starlette.concurrency import run_in_threadpool

from baige.control.errors import NotFound
from baige.control.service import ControlService

__all__ = ["HeartbeatBatcher"]


class HeartbeatBatcher:
    """One per API process (its event loop): :meth:`beat` from the heartbeat endpoint."""

    def __init__(self, service: ControlService, max_names: int = 50_000) -> None:
        self.service = service
        self.max_names = max_names  # at most this many names in one statement
        self._waiting: list[tuple[frozenset[str], asyncio.Future[int]]] = []
        self._writing = False
        self._writer: asyncio.Task[None] | None = None  # held: the loop keeps only weak refs

    async def beat(self, names: list[str]) -> int:
        """Mark ``names`` alive (with whatever else is waiting); the count, or NotFound."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append((frozenset(names), future))
        if not self._writing:
            self._writing = True
            self._writer = asyncio.get_running_loop().create_task(self._write())
        return await future

    def _take(self) -> list[tuple[frozenset[str], asyncio.Future[int]]]:
        taken, count = 0, 0
        for names, _ in self._waiting:
            if taken and count + len(names) > self.max_names:
                break
            taken += 1
            count += len(names)
        batch, self._waiting = self._waiting[:taken], self._waiting[taken:]
        return batch

    async def _write(self) -> None:
        try:
            while self._waiting:
                batch = self._take()
                every: set[str] = set().union(*(names for names, _ in batch))
                try:
                    alive = await run_in_threadpool(self.service.mark_alive, sorted(every))
                except Exception as err:  # each waiting request answers with it (503 …)
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(err)
                    continue
                for names, future in batch:
                    if future.done():  # its request was cancelled (the client left)
                        continue
                    missing = names - alive
                    if missing:
                        future.set_exception(
                            NotFound(f"node(s) not registered: {', '.join(sorted(missing))}")
                        )
                    else:
                        future.set_result(len(names))
        finally:
            self._writing = False
