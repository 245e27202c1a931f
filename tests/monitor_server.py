"""A stand-in for the monitors' servers: Sentry's ingest endpoint, healthchecks.io, a webhook.

Run as ``python -m tests.monitor_server PORT LOG``: it answers every request with
200 (or ``<code>`` for ``/status/<code>/...``) and appends it to LOG as one JSON
line, with Sentry's envelopes parsed into their items, as Sentry's own ingest would
read them. With ``/dev/null`` as LOG (the
bench), it only answers, so that it takes as little of the machine as it can.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit


def decode(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        import brotli  # type: ignore[import-not-found]

        decoded: bytes = brotli.decompress(body)
        return decoded
    return body


def parse_envelope(body: bytes) -> dict[str, Any]:
    """An envelope's header and items: a JSON header line, then each item's header and payload."""
    header_line, _, rest = body.partition(b"\n")
    items = []
    while rest.strip():
        item_line, _, rest = rest.partition(b"\n")
        item = json.loads(item_line)
        if "length" in item:
            payload, rest = rest[: item["length"]], rest[item["length"] + 1 :]
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append({"header": item, "payload": json.loads(payload) if payload else None})
    return {"header": json.loads(header_line), "items": items}


class Handler(BaseHTTPRequestHandler):
    # Keeps connections open between requests, as the monitors' own servers do.
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    lock = threading.Lock()
    log: Path

    def do_GET(self) -> None:
        self.record(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.record(self.rfile.read(length))

    def record(self, raw: bytes) -> None:
        if self.log != Path(os.devnull):
            self.write(raw)
        answer = b"{}"
        # /status/<code>/... answers with that status.
        parts = self.path.split("/")
        status = int(parts[2]) if len(parts) > 2 and parts[1] == "status" else 200
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting: it counts a failed delivery

    def write(self, raw: bytes) -> None:
        parts = urlsplit(self.path)
        body = decode(raw, self.headers.get("Content-Encoding", ""))
        entry: dict[str, Any] = {
            "method": self.command,
            "path": parts.path,
            "query": dict(parse_qsl(parts.query)),
            "user_agent": self.headers.get("User-Agent", ""),
            "host": self.headers.get("Host", ""),
            # Tells one connection from another.
            "client_port": self.client_address[1],
        }
        if parts.path.endswith("/envelope/"):
            entry["envelope"] = parse_envelope(body)
        elif self.headers.get("Content-Type") == "application/json":
            entry["json"] = json.loads(body)
        else:
            entry["body"] = body.decode(errors="replace")
        with self.lock, self.log.open("a") as out:
            out.write(json.dumps(entry) + "\n")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    port, log = int(sys.argv[1]), Path(sys.argv[2])
    Handler.log = log
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
