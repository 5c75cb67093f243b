"""Granian, the hub's production WSGI server: ``python -m config.granian [--bind HOST:PORT]``.

Granian parses HTTP, keeps connections alive and writes responses in Rust, outside the
GIL; only the WSGI call runs in Python, in a pool of blocking threads per worker process.
Profiled under wrk, gunicorn's gthread machinery (its event loop, HTTP parsing and response
writing, all in Python) took about half of a worker's CPU on the golden record read: the
issue 9 target (1,500 reads/s on 2 cores) leaves about 1.2 ms of CPU per read for the whole
server.  Measured by ``bench/api_load.py --server granian|gunicorn``
(docs/performance.md).  gunicorn stays a supported alternative (``config/gunicorn.py``).

Settings, from the environment (the same names as for gunicorn where they mean the same):

- ``WEB_CONCURRENCY``: worker processes (default 1 per core: the HTTP work no longer
  competes for the GIL, so a second process per core buys little);
- ``GRANIAN_BLOCKING_THREADS``: Python threads per worker running the application (default
  2), each with its own persistent database connection.  Granian's own default is half
  the backpressure (hundreds of threads, hence hundreds of database connections); the
  requests beyond the threads wait in Granian's queue for one;
- ``GRANIAN_BACKPRESSURE``: client *connections* a worker serves at once (default: the
  backlog divided among the workers, Granian's own).  Not requests: a worker holding that
  many connections, idle keep-alive ones too, accepts no other until one closes, so a low
  figure (say the thread count) lets a few idle clients stall everyone;
- ``GRANIAN_BACKLOG``: the listen socket's backlog (default 2048);
- ``GRANIAN_KEEPALIVE``: ``0`` turns HTTP/1 keep-alive off (default on, as gunicorn's
  threaded workers); ``GRANIAN_HEADER_READ_TIMEOUT``: milliseconds a client gets to send
  a request's headers (default 5,000, gunicorn's keep-alive 5 s; Granian has no separate
  idle timeout);
- ``GRANIAN_WORKERS_KILL_TIMEOUT``: seconds a worker gets to finish its requests after
  SIGTERM or SIGINT before it is killed (default 30, gunicorn's graceful timeout).

The same command line with Granian's own CLI::

    granian --interface wsgi --workers 2 --blocking-threads 2 --backpressure 1024 \\
        --backlog 2048 --http 1 --no-ws --http1-header-read-timeout 5000 \\
        --workers-kill-timeout 30 --host 0.0.0.0 --port 8000 config.wsgi:application
"""

from __future__ import annotations

import argparse
import os
from typing import Any


def server_options(bind: str) -> dict[str, Any]:
    """Granian's keyword arguments for the hub, from the environment."""
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings

    host, _, port = bind.rpartition(":")
    threads = int(os.environ.get("GRANIAN_BLOCKING_THREADS") or 2)
    workers = int(os.environ.get("WEB_CONCURRENCY") or (os.cpu_count() or 1))
    backlog = int(os.environ.get("GRANIAN_BACKLOG") or 2048)
    keep_alive = os.environ.get("GRANIAN_KEEPALIVE", "1").strip().lower() not in {"0", "false"}
    return {
        "address": host or "0.0.0.0",  # noqa: S104  # nosec B104  # ":8000": every interface, as gunicorn
        "port": int(port),
        "interface": Interfaces.WSGI,
        "workers": workers,
        "blocking_threads": threads,
        "backpressure": int(os.environ.get("GRANIAN_BACKPRESSURE") or max(1, backlog // workers)),
        "backlog": backlog,
        "http": HTTPModes.http1,
        "websockets": False,
        "http1_settings": HTTP1Settings(
            keep_alive=keep_alive,
            header_read_timeout=int(os.environ.get("GRANIAN_HEADER_READ_TIMEOUT") or 5000),
        ),
        "workers_kill_timeout": int(os.environ.get("GRANIAN_WORKERS_KILL_TIMEOUT") or 30),
        # The hub logs through Django's LOGGING (JSON lines with request ids); Granian's
        # own lines (start, stop, worker deaths) stay at INFO on the console.
        "log_access": False,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bind", default=os.environ.get("GRANIAN_BIND", "0.0.0.0:8000"))
    parser.add_argument("--workers", type=int, help="worker processes (WEB_CONCURRENCY)")
    args = parser.parse_args(argv)
    from granian import Granian

    if args.workers:
        os.environ["WEB_CONCURRENCY"] = str(args.workers)
    options = server_options(args.bind)
    Granian("config.wsgi:application", **options).serve()


if __name__ == "__main__":
    main()
