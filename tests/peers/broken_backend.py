"""Permanently broken MCP backends, for reconnect-storm tests and benchmarks.

Each answers `initialize` correctly and then fails in one way, forever:

    python tests/peers/broken_backend.py bad-tools  --port P --count-file F
        Streamable HTTP on 127.0.0.1:P/mcp; tools/list answers {"tools": "not a list"}.
    python tests/peers/broken_backend.py endless-cursor --port P --count-file F
        Streamable HTTP; every tools/list page carries a new nextCursor.
    python tests/peers/broken_backend.py crash-on-list --count-file F
        stdio; the process exits as soon as tools/list arrives.

`--count-file` gets one line per HTTP request received (HTTP modes) or per
process start (stdio), so a test or benchmark can count what the gateway
sent. Standard library only; HTTP binds loopback. It prints
`listening on http://127.0.0.1:P/mcp` once it accepts connections.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOOPBACK = "127.0.0.1"


class Counter:
    def __init__(self, path: str | None) -> None:
        self.path = path
        self.lock = threading.Lock()

    def hit(self, what: str) -> None:
        if self.path is None:
            return
        with self.lock, open(self.path, "a", encoding="utf-8") as out:
            out.write(what + "\n")


def initialize_result(request: dict) -> dict:
    version = (request.get("params") or {}).get("protocolVersion", "2025-06-18")
    return {
        "protocolVersion": version,
        "capabilities": {"tools": {}},
        "serverInfo": {"name": "broken", "version": "1.0.0"},
    }


def answer(mode: str, request: dict, pages: list[int]) -> dict | None:
    """The JSON-RPC answer to `request`, or None for a notification."""
    if "id" not in request:
        return None
    method = request.get("method")
    if method == "initialize":
        result = initialize_result(request)
    elif method == "ping":
        result = {}
    elif method == "tools/list" and mode == "bad-tools":
        result = {"tools": "not a list"}
    elif method == "tools/list" and mode == "endless-cursor":
        pages[0] += 1
        n = pages[0]
        tool = {"name": f"t{n}", "inputSchema": {"type": "object"}}
        result = {"tools": [tool], "nextCursor": f"page-{n}"}
    else:
        return {"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": "not found"}}
    return {"jsonrpc": "2.0", "id": request["id"], "result": result}


def serve_http(mode: str, port: int, counter: Counter) -> None:
    pages = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:
            pass

        def _send(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            counter.hit("POST")
            length = int(self.headers.get("Content-Length") or 0)
            try:
                request = json.loads(self.rfile.read(length))
            except ValueError:
                self._send(400)
                return
            reply = answer(mode, request, pages) if isinstance(request, dict) else None
            if reply is None:
                self._send(202)
            else:
                self._send(200, json.dumps(reply).encode())

        def do_GET(self) -> None:  # noqa: N802
            counter.hit("GET")
            self._send(405)

        def do_DELETE(self) -> None:  # noqa: N802
            counter.hit("DELETE")
            self._send(405)

    server = ThreadingHTTPServer((LOOPBACK, port), Handler)
    server.daemon_threads = True
    print(f"listening on http://{LOOPBACK}:{server.server_address[1]}/mcp", flush=True)
    server.serve_forever()


def serve_stdio(counter: Counter) -> None:
    counter.hit("start")
    for line in sys.stdin:
        try:
            request = json.loads(line)
        except ValueError:
            continue
        if request.get("method") == "tools/list":
            sys.exit(3)  # the crash
        reply = answer("crash-on-list", request, [0])
        if reply is not None:
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["bad-tools", "endless-cursor", "crash-on-list"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--count-file")
    args = parser.parse_args()
    counter = Counter(args.count_file)
    if args.mode == "crash-on-list":
        serve_stdio(counter)
    else:
        serve_http(args.mode, args.port, counter)


if __name__ == "__main__":
    main()
