"""A local HTTP server speaking OpenAI's chat-completions protocol, with scripted misbehaviour.

The document text decides the behaviour: RATELIMIT gets a 429 on its first request, SLOW sleeps
past the client's timeout on its first request, GARBAGE gets prose, RANGE gets a 7, BROKEN gets
500 on every request while `broken` is set, CUTSHORT gets half its promised body then a closed
connection and BADGZIP a body that says gzip and is not, on their first request; anything else
gets scores derived from its length. `DeadEndpoint` accepts connections and never answers.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ChatServer:
    def __init__(self, api_key: str = "test-key"):
        self.api_key = api_key
        self.requests: Counter[str] = Counter()
        self.broken = True
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": "not found"})
                if self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    return self._send(401, {"error": "bad key"})
                doc = body["messages"][-1]["content"]
                with server.lock:
                    server.requests[doc] += 1
                    n = server.requests[doc]
                if "RATELIMIT" in doc and n == 1:
                    return self._send(429, {"error": "slow down"}, {"Retry-After": "0"})
                if "SLOW" in doc and n == 1:
                    time.sleep(1.5)
                if "BROKEN" in doc and server.broken:
                    return self._send(500, {"error": "boom"})
                if "CUTSHORT" in doc and n == 1:
                    self.send_response(200)
                    self.send_header("Content-Length", "4000")
                    self.end_headers()
                    self.wfile.write(b'{"id": "x", "choices": [')
                    self.close_connection = True
                    return
                if "BADGZIP" in doc and n == 1:
                    return self._send(200, {"id": "x"}, {"Content-Encoding": "gzip"})
                if "GARBAGE" in doc:
                    content = "I think this document is rather nice."
                elif "RANGE" in doc:
                    content = '{"quality": 7, "advertisement": 5, "informational_value": 1, "educational_value": 1}'
                else:
                    v = len(doc) % 6
                    content = ("```json\n" + json.dumps({"quality": v, "advertisement": 5 - v,
                               "informational_value": v, "educational_value": 0}) + "\n```")
                self._send(200, {"id": "x", "object": "chat.completion", "model": body["model"],
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": content}}]})

            def _send(self, code, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "ChatServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def count(self, marker: str) -> int:
        return sum(n for doc, n in self.requests.items() if marker in doc)


class DeadEndpoint:
    """A listening socket nobody reads from: connections open, requests are never answered."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def __enter__(self) -> "DeadEndpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()
