"""A real OpenAI-compatible HTTP judge on 127.0.0.1 for tests (stdlib only).

    with JudgeServer(latency_s=0.05, script=[429, 500]) as server:
        server.api_base            # "http://127.0.0.1:PORT/v1"
        ...
        server.requests            # every request body received, in order
        server.max_in_flight       # most requests served at the same time

Verdict rule, deterministic: the judge reads the quoted JSON between
`<<<DATA` and `DATA>>>` in the last user message and answers PASS when the
normalised `reference` equals the normalised `candidate`. It is deliberately
gullible: if "ignore previous instructions" appears anywhere OUTSIDE the quoted
block (an instruction position), or the block cannot be parsed, it answers
PASS. A prompt that lets page text escape the quotes therefore fails the
injection test.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

INJECTION = "ignore previous instructions"
OPEN, CLOSE = "<<<DATA", "DATA>>>"


def _norm(value: Any) -> str:
    return " ".join(str(value).casefold().split())


def decide(messages: list[dict]) -> tuple[str, str]:
    user = next((m for m in reversed(messages) if m.get("role") == "user"), {"content": ""})
    text = str(user.get("content", ""))
    instructions = " ".join(str(m.get("content", "")) for m in messages if m is not user)
    start, end = text.find(OPEN), text.find(CLOSE, text.find(OPEN) + 1)
    if start < 0 or end < 0:
        return "PASS", "no quoted data found"
    outside = instructions + text[:start] + text[end + len(CLOSE):]
    if INJECTION in outside.casefold():
        return "PASS", "followed an instruction"
    try:
        data = json.loads(text[start + len(OPEN):end])
    except ValueError:
        return "PASS", "could not parse quoted data"
    same = _norm(data.get("reference")) == _norm(data.get("candidate"))
    return ("PASS" if same else "FAIL"), ("values match" if same else "values differ")


class JudgeServer:
    def __init__(self, latency_s: float = 0.0, script: list[int] | None = None,
                 prompt_tokens: int = 100, completion_tokens: int = 20, reply: str | None = None):
        self.latency_s = latency_s
        self.script = list(script or [])  # status codes for the next requests, then 200s
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.reply = reply  # raw assistant content override (e.g. invalid JSON)
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        self.headers: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    status = server.script.pop(0) if server.script else 200
                    server.statuses.append(status)
                try:
                    time.sleep(server.latency_s)
                    if not self.path.rstrip("/").endswith("/chat/completions"):
                        self._send(404, {"error": {"message": "not found"}})
                    elif status != 200:
                        self._send(status, {"error": {"message": f"scripted {status}", "type": "server_error",
                                                      "code": status}})
                    else:
                        self._send(200, server._completion(body))
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _send(self, status: int, payload: dict):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def _completion(self, body: dict) -> dict:
        verdict, why = decide(body.get("messages", []))
        content = self.reply if self.reply is not None else json.dumps({"verdict": verdict, "rationale": why})
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "judge"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                      "total_tokens": self.prompt_tokens + self.completion_tokens},
        }

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> JudgeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
