"""One whole HTTP answer from a ``BaseHTTPRequestHandler``: the services' small servers
(the sink's API, the status server) answer every request this way."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler


def reply(handler: BaseHTTPRequestHandler, status: int, content_type: str, body: bytes) -> None:
    """Send ``status`` with ``body`` (its length given, so the connection can be reused)."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
