"""A real HTTP receiver on loopback that verifies signatures and records what it gets.

Used in-process (a thread, ``Receiver``) by the service tests and as a separate process
(``python -m tests.sync.receiver_server``) by the worker tests and ``bench/delivery.py``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sync.receiver import VerificationError, Verifier


@dataclass
class Received:
    msg_id: str
    event: dict[str, Any]
    arrived: float


@dataclass
class Receiver:
    secrets: list[str]
    status: int = 200
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    calls: int = 0
    duplicates: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def unique_ids(self) -> set[str]:
        return {r.msg_id for r in self.received}

    def start(self) -> Receiver:
        verifier = Verifier(secrets=self.secrets, tolerance=300)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with outer.lock:
                    outer.calls += 1
                if outer.delay:
                    time.sleep(outer.delay)
                status = outer.status
                if status == 200:
                    headers = dict(self.headers.items())
                    with outer.lock:
                        if verifier.is_duplicate(headers):
                            # a retry of a message already processed: acknowledge it again
                            outer.duplicates += 1
                        else:
                            try:
                                event = verifier.verify(headers, body)
                            except VerificationError as exc:
                                outer.refused.append(str(exc))
                                status = 400
                            else:
                                outer.received.append(
                                    Received(headers["webhook-id"], event, time.time())
                                )
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


if __name__ == "__main__":
    # python -m tests.sync.receiver_server SECRET OUTFILE: prints its URL, appends each
    # received message as a JSON line {"id", "seq", "golden", "version", "arrived"}.
    secret, out_path = sys.argv[1], sys.argv[2]
    receiver = Receiver(secrets=[secret]).start()
    print(receiver.url, flush=True)
    with open(out_path, "a", buffering=1) as out:
        written = 0
        while True:
            time.sleep(0.05)
            with receiver.lock:
                fresh = receiver.received[written:]
                written = len(receiver.received)
                calls = receiver.calls
            for r in fresh:
                line = {
                    "id": r.msg_id,
                    "seq": r.event.get("seq"),
                    "golden": r.event.get("golden", {}).get("id"),
                    "version": r.event.get("golden", {}).get("version"),
                    "arrived": r.arrived,
                    "calls": calls,
                }
                out.write(json.dumps(line) + "\n")
