"""A declared fake inference engine: OpenAI-compatible, streaming, with vLLM's metric names.

``python -m baige.engines.fake --port 8000 --token-latency 0.02 --max-concurrency 8``

Real engines need GPUs and model weights, neither of which a laptop or this project's CI
has; the gateway, the autoscaler and the co-location benchmark still need something that
behaves like one under load. This server does: ``/v1/completions`` and
``/v1/chat/completions`` (streamed as server-sent events when ``"stream": true``), one token
every ``--token-latency`` seconds, at most ``--max-concurrency`` requests generating at once
(the rest wait, as in a real engine's scheduler), ``/health`` (503 until ``--load-seconds``
have passed, like a model loading), and ``/metrics`` with the gauges vLLM exports
(``vllm:num_requests_running``, ``vllm:num_requests_waiting``, ``vllm:gpu_cache_usage_perc``)
and its request and token counters. It generates no language: token ``i`` of a reply is the
``i``-th word of the prompt read backwards, so tests can check what came back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["FakeEngine", "create_app", "main"]

MAX_TOKENS = 4096


@dataclass(slots=True)
class FakeEngine:
    model: str = "fake"
    token_latency: float = 0.02
    max_concurrency: int = 8
    load_seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)
    running: int = 0
    waiting: int = 0
    requests: int = 0
    tokens: int = 0
    _slots: asyncio.Semaphore | None = None

    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrency)
        return self._slots

    @property
    def ready(self) -> bool:
        return time.monotonic() - self.started >= self.load_seconds

    async def generate(self, prompt: str, max_tokens: int) -> AsyncIterator[str]:
        """Tokens, one per ``token_latency``, once a generation slot is free."""
        words = prompt.split()[::-1] or ["…"]
        self.waiting += 1
        try:
            await self.slots().acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            for index in range(max_tokens):
                await asyncio.sleep(self.token_latency)
                self.tokens += 1
                yield words[index % len(words)] + " "
        finally:
            self.running -= 1
            self.requests += 1
            self.slots().release()

    def metrics(self) -> str:
        cache = self.running / self.max_concurrency if self.max_concurrency else 0.0
        labels = f'{{model_name="{self.model}"}}'
        lines = [
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{labels} {self.running}",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{labels} {self.waiting}",
            "# TYPE vllm:gpu_cache_usage_perc gauge",
            f"vllm:gpu_cache_usage_perc{labels} {cache:.4f}",
            "# TYPE vllm:request_success_total counter",
            f"vllm:request_success_total{labels} {self.requests}",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{labels} {self.tokens}",
        ]
        return "\n".join(lines) + "\n"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status)


async def _body(request: Request) -> dict[str, object] | JSONResponse:
    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError:
        return _error(400, "the body is not JSON")
    if not isinstance(data, dict):
        return _error(400, "the body must be a JSON object")
    return data


def _max_tokens(data: dict[str, object]) -> int | JSONResponse:
    value = data.get("max_tokens", 16)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS:
        return _error(400, f"max_tokens must be an integer from 1 to {MAX_TOKENS}")
    return value


def create_app(engine: FakeEngine) -> Starlette:
    async def health(_request: Request) -> Response:
        if not engine.ready:
            return PlainTextResponse("loading", status_code=503)
        return PlainTextResponse("ok")

    async def metrics(_request: Request) -> Response:
        return PlainTextResponse(engine.metrics(), media_type="text/plain; version=0.0.4")

    async def models(_request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": engine.model, "object": "model"}]})

    async def serve(request: Request, chat: bool) -> Response:
        if not engine.ready:
            return _error(503, "the model is still loading")
        data = await _body(request)
        if isinstance(data, JSONResponse):
            return data
        tokens = _max_tokens(data)
        if isinstance(tokens, JSONResponse):
            return tokens
        if chat:
            messages = data.get("messages")
            if not isinstance(messages, list) or not messages:
                return _error(400, "messages must be a non-empty list")
            prompt = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        else:
            prompt = str(data.get("prompt", ""))
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:12]}"
        kind = "chat.completion" if chat else "text_completion"

        def choice(text: str, done: bool, streaming: bool) -> dict[str, object]:
            reason = "length" if done else None
            if not chat:
                return {"index": 0, "text": text, "finish_reason": reason}
            key = "delta" if streaming else "message"
            return {"index": 0, key: {"role": "assistant", "content": text},
                    "finish_reason": reason}  # fmt: skip

        if data.get("stream"):

            async def events() -> AsyncIterator[bytes]:
                async for token in engine.generate(prompt, tokens):
                    chunk = {"id": ident, "object": f"{kind}.chunk", "model": engine.model,
                             "choices": [choice(token, False, True)]}  # fmt: skip
                    yield f"data: {json.dumps(chunk)}\n\n".encode()
                last = {"id": ident, "object": f"{kind}.chunk", "model": engine.model,
                        "choices": [choice("", True, True)]}  # fmt: skip
                yield f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode()

            return StreamingResponse(events(), media_type="text/event-stream")
        text = "".join([token async for token in engine.generate(prompt, tokens)])
        return JSONResponse(
            {
                "id": ident,
                "object": kind,
                "created": int(time.time()),
                "model": engine.model,
                "choices": [choice(text, True, False)],
                "usage": {
                    "prompt_tokens": len(prompt.split()),
                    "completion_tokens": tokens,
                    "total_tokens": len(prompt.split()) + tokens,
                },
            }
        )

    async def completions(request: Request) -> Response:
        return await serve(request, chat=False)

    async def chat_completions(request: Request) -> Response:
        return await serve(request, chat=True)

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/metrics", metrics),
            Route("/v1/models", models),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--model", default="fake")
    parser.add_argument("--token-latency", type=float, default=0.02, help="seconds per token")
    parser.add_argument("--max-concurrency", type=int, default=8)
    parser.add_argument("--load-seconds", type=float, default=0.0, help="503 until then")
    args = parser.parse_args(argv)
    if not 0 <= args.token_latency <= 10 or args.max_concurrency < 1:
        parser.error("--token-latency must be 0..10 s and --max-concurrency at least 1")
    import uvicorn  # noqa: PLC0415

    engine = FakeEngine(args.model, args.token_latency, args.max_concurrency, args.load_seconds)
    print(f"fake engine {args.model!r} on {args.host}:{args.port}", flush=True)
    uvicorn.run(create_app(engine), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
