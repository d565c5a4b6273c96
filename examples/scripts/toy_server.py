"""A toy inference service: answers POST /predict with a made-up completion.

Listens on $PORT (Baige gives each replica its own); GET /healthz answers "ok".
"""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def _send(self, code: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._send(200, {"status": "ok", "replica": os.environ.get("BAIGE_REPLICA_INDEX")})
        else:
            self._send(404, {"error": "try POST /predict"})

    def do_POST(self) -> None:
        if self.path != "/predict":
            self._send(404, {"error": "try POST /predict"})
            return
        length = int(self.headers.get("Content-Length", "0"))
        try:
            prompt = str(json.loads(self.rfile.read(length) or b"{}").get("prompt", ""))
        except ValueError:
            self._send(400, {"error": 'send JSON like {"prompt": "hello"}'})
            return
        self._send(
            200, {"completion": prompt[::-1], "device": os.environ.get("CUDA_VISIBLE_DEVICES")}
        )

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        print(f"{self.address_string()} {format % args}", flush=True)


def main() -> None:
    port = int(os.environ.get("PORT", "8000"))
    print(
        f"serving on 127.0.0.1:{port} with share {os.environ.get('BAIGE_ACCELERATOR_SHARE')}",
        flush=True,
    )
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
