"""A small fault-injecting HTTP proxy for the tests, on 127.0.0.1 in front of a moto server.

It forwards one request per connection to the server and, on a schedule, can:
- reset a connection (a TCP RST, no answer) for the next N requests that match, or every k-th;
- refuse connections for N seconds (nothing listens on its port meanwhile);
- cut an answer off half-way through its body, then reset the connection;
- delay an answer by N seconds;
- answer a status itself (503, or a 400 ThrottlingException) without asking the server.

A request matches a fault when the fault's text appears in its head (method, path, headers, such as
``X-Amz-Target: ...GetLogEvents``); "" matches every request. Every loop is bounded: the accept loop
checks a stop flag every 0.2 s, each connection reads for at most SOCKET_SECONDS, and stop() waits
for none of them. It connects to 127.0.0.1 only.
"""

import contextlib
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass

SOCKET_SECONDS = 30
HOST = "127.0.0.1"


@dataclass
class Fault:
    kind: str  # "reset", "cut", "delay" or "status"
    match: str = ""
    times: int = 1  # how many matching requests it takes
    every: int = 1  # it takes every n-th matching request only
    seconds: float = 0.0  # delay
    status: int = 503
    code: str = "ServiceUnavailable"  # status: the error code in the body
    matched: int = 0


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = (HOST, upstream_port)
        self.faults: list[Fault] = []
        self.seen: list[tuple[str, str]] = []  # (what happened, request line), in order
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._refuse_until = 0.0
        self._listener = self._listen(0)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name="faultproxy")

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    # --- the schedule ----------------------------------------------------------------------------
    def add(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def refuse_for(self, seconds: float) -> None:
        """From now on, connections are refused for ``seconds``."""
        with self._lock:
            self._refuse_until = time.monotonic() + seconds

    def pending(self) -> int:
        """How many faulty answers are still to come."""
        with self._lock:
            return sum(fault.times for fault in self.faults)

    def count(self, happened: str, text: str = "") -> int:
        with self._lock:
            return sum(1 for what, line in self.seen if what == happened and text in line)

    def _take(self, head: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.match in head:
                    fault.matched += 1
                    if fault.matched % fault.every:
                        continue
                    fault.times -= 1
                    return fault
        return None

    def _record(self, happened: str, head: str) -> None:
        with self._lock:
            self.seen.append((happened, head.split("\r\n", 1)[0]))

    # --- sockets ---------------------------------------------------------------------------------
    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, port))
        listener.listen(128)
        listener.settimeout(0.2)
        return listener

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            if time.monotonic() < self._refuse_until:
                if self._listener is not None:
                    self._listener.close()
                    self._listener = None
                time.sleep(0.05)
                continue
            if self._listener is None:
                self._listener = self._listen(self.port)
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()
        if self._listener is not None:
            self._listener.close()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(SOCKET_SECONDS)
        with contextlib.closing(client):
            try:
                head, body = _read_request(client)
            except (OSError, ValueError):
                return
            fault = self._take(head)
            if fault and fault.kind == "reset":
                self._record("reset", head)
                _reset_on_close(client)
                return
            if fault and fault.kind == "status":
                self._record(f"status {fault.status}", head)
                client.sendall(_error_answer(head, fault))
                return
            if fault and fault.kind == "delay":
                self._record("delay", head)
                time.sleep(fault.seconds)
            try:
                answer = self._forward(head, body)
            except OSError:
                return
            if fault and fault.kind == "cut":
                self._record("cut", head)
                with contextlib.suppress(OSError):
                    client.sendall(answer[: len(answer) // 2])
                _reset_on_close(client)
                return
            self._record("ok", head)
            with contextlib.suppress(OSError):
                client.sendall(answer)

    def _forward(self, head: str, body: bytes) -> bytes:
        lines = [line for line in head.split("\r\n") if line]
        kept = [
            line for line in lines[1:] if not line.lower().startswith(("connection:", "expect:"))
        ]
        request = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode() + body
        with socket.create_connection(self.upstream, timeout=SOCKET_SECONDS) as upstream:
            upstream.sendall(request)
            chunks = []
            while chunk := upstream.recv(65536):
                chunks.append(chunk)
        answer = b"".join(chunks)
        # The client must not reuse the connection: this proxy closes it after one answer.
        head_end = answer.find(b"\r\n\r\n")
        if head_end > 0 and b"connection: close" not in answer[:head_end].lower():
            answer = answer[:head_end] + b"\r\nConnection: close" + answer[head_end:]
        return answer


def _reset_on_close(client: socket.socket) -> None:
    """SO_LINGER with a zero timeout: close() sends RST instead of FIN."""
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _read_request(client: socket.socket) -> tuple[str, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(65536)
        if not chunk:
            raise ValueError("the client closed the connection")
        data += chunk
    raw_head, body = data.split(b"\r\n\r\n", 1)
    head = raw_head.decode("latin-1")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in head.split("\r\n")[1:])
    }
    if headers.get("expect", "").lower() == "100-continue":
        client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    length = int(headers.get("content-length", "0") or 0)
    while len(body) < length:
        chunk = client.recv(min(65536, length - len(body)))
        if not chunk:
            raise ValueError("the request body was cut short")
        body += chunk
    return head + "\r\n\r\n", body


def _error_answer(head: str, fault: Fault) -> bytes:
    """An error as the service would send it: JSON for JSON services, else XML."""
    reason = {503: "Service Unavailable", 400: "Bad Request", 500: "Internal Server Error"}
    if "x-amz-target" in head.lower():
        body = json.dumps({"__type": fault.code, "message": "injected by the test proxy"})
        kind = "application/x-amz-json-1.1"
    else:
        body = (f"<Error><Code>{fault.code}</Code><Message>injected by the test proxy</Message>"
                "</Error>")  # fmt: skip
        kind = "application/xml"
    payload = body.encode()
    return (
        f"HTTP/1.1 {fault.status} {reason.get(fault.status, 'Error')}\r\n"
        f"Content-Type: {kind}\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    ).encode() + payload


def throttling(match: str, times: int) -> Fault:
    return Fault("status", match, times, status=400, code="ThrottlingException")
