"""Group commit: many requests, one transaction.

10,000 node agents beating every 10 s are 1,000 requests a second, each of which marks a
few rows; at a cluster's boot the same agents all register at once. One transaction per
request (and one worker-thread hop to run it) costs more than the rest of the request.
Here the requests that arrive while one write is under way wait for the next, which does
all of theirs at once. A lone request is written at once, so an idle API adds no delay; a
request's answer still comes only after its rows are written, and it gets its own result
(or its own error: a node not registered is that request's 404, not its neighbours').
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from starlette.concurrency import run_in_threadpool

__all__ = ["GroupCommit"]

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    """One per API process (its event loop) and kind of write. ``write`` gets the items of
    every waiting request, in arrival order, and returns one result or exception for
    each; it runs on a worker thread. If it raises, every request of its batch answers
    with that error (a 503 for a database outage, as one request alone would). A batch
    holds at most ``max_size`` by ``size`` (but always at least one request)."""

    def __init__(
        self,
        write: Callable[[list[Item]], Sequence[Result | Exception]],
        size: Callable[[Item], int],
        max_size: int,
    ) -> None:
        self.write = write
        self.size = size
        self.max_size = max_size
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._writing = False
        self._writer: asyncio.Task[None] | None = None  # held: the loop keeps only weak refs

    async def submit(self, item: Item) -> Result:
        """Write ``item`` with whatever else is waiting; its result, or its error."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if not self._writing:
            self._writing = True
            self._writer = asyncio.get_running_loop().create_task(self._drain())
        return await future

    def _take(self) -> list[tuple[Item, asyncio.Future[Result]]]:
        taken, count = 0, 0
        for item, _ in self._waiting:
            n = self.size(item)
            if taken and count + n > self.max_size:
                break
            taken += 1
            count += n
        batch, self._waiting = self._waiting[:taken], self._waiting[taken:]
        return batch

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._take()
                try:
                    results = await run_in_threadpool(self.write, [item for item, _ in batch])
                except Exception as err:  # each waiting request answers with it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(err)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # its request was cancelled (the client left)
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._writing = False
