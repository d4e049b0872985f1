"""A real HTTP receiver for webhook tests: http.server in a thread on 127.0.0.1 that checks the
catalog's signature as a customer's receiver would (docs/monitoring.md), answers with the statuses
it is told to, in order, and keeps what it received."""

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes
    signature_valid: bool | None

    @property
    def json(self):
        return json.loads(self.body)


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    statuses: list[int] = field(default_factory=list)  # answered in order; 200 when empty
    secret: str = ""
    received: list[Received] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/catalog"

    def wait_for(self, count: int, timeout: float = 10) -> list[Received]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.received) >= count, timeout=timeout)
        return list(self.received)


def verify(secret: str, headers: dict, body: bytes) -> bool:
    """What a receiver does: recompute v1=HMAC-SHA256(secret, "<timestamp>.<body>") and compare."""
    timestamp = headers.get("X-Catalog-Timestamp", "")
    given = headers.get("X-Catalog-Signature", "")
    expected = "v1=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(given, expected)


def start_receiver() -> Receiver:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = dict(self.headers.items())
            valid = verify(receiver.secret, headers, body) if receiver.secret else None
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            with receiver.arrived:  # recorded before answering: the sender's attempt ends after this
                receiver.received.append(Received(self.path, headers, body, valid))
                receiver.arrived.notify_all()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if status < 300 else b"not now")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = Receiver(server=server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver
