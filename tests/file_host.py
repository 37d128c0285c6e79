"""Serving a file as a download host does, for the tests' stand-ins of Kaggle and Pulumi's releases."""

import time
from http.server import BaseHTTPRequestHandler

CHUNK = 1 << 16


def send_file(handler: BaseHTTPRequestHandler, body: bytes, cut_after: int | None = None,
              trickle_seconds: float = 0.0, headers: dict | None = None) -> None:  # fmt: skip
    """The whole file (200), or the rest of it from a Range request's start (206). ``cut_after``:
    drop the connection that many bytes in; ``trickle_seconds``: pause between 64 KiB chunks."""
    start = 0
    if handler.headers.get("Range"):
        start = int(handler.headers["Range"].split("=")[1].split("-")[0])
        handler.send_response(206)
        handler.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
    else:
        handler.send_response(200)
    handler.send_header("Content-Length", str(len(body) - start))
    handler.send_header("Accept-Ranges", "bytes")
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    end = len(body) if cut_after is None else min(len(body), start + cut_after)
    for offset in range(start, end, CHUNK):
        handler.wfile.write(body[offset : min(end, offset + CHUNK)])
        if trickle_seconds:
            time.sleep(trickle_seconds)
    if cut_after is not None:
        handler.wfile.flush()
        handler.connection.shutdown(2)  # the connection drops mid-body
