"""gunicorn's settings for the hub: ``gunicorn -c config/gunicorn.py config.wsgi:application``
(flags on the command line win over them, and ``GUNICORN_CMD_ARGS`` over both).

Threaded workers with keep-alive: a source system's client reuses its connection for the
next request instead of paying a TCP handshake and a fresh accept per request (gunicorn's
default ``sync`` worker closes every connection after one response), and a thread waiting
on PostgreSQL leaves the process's other threads to run.  Measured by
``bench/api_load.py`` (docs/performance.md).

- ``WEB_CONCURRENCY``: worker processes (default 2 per core);
- ``GUNICORN_THREADS``: threads per worker (default 2), each with its own persistent
  database connection;
- ``GUNICORN_KEEPALIVE``: seconds an idle client connection is kept open (default 5;
  behind a load balancer, longer than its own idle timeout).
"""

from __future__ import annotations

import os

worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY") or 2 * (os.cpu_count() or 1))
threads = int(os.environ.get("GUNICORN_THREADS") or 2)
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE") or 5)
