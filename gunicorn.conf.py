"""gunicorn settings, read from the environment the platform gives us."""

import gc
import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# gthread, plus a deadline for each request's headers (REQUEST_HEADER_TIMEOUT):
# gunicorn itself lets a client that stalls mid-headers hold a thread for good.
worker_class = "diary.infra.gunicorn_worker.ThreadWorker"
# Under App Runner's and the ECS load balancer's 120 s request limit, so a stuck
# worker is recycled by us rather than cut off by the proxy.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
# Each worker listens on its own SO_REUSEPORT socket and the kernel spreads new
# connections over them. With one shared socket, the worker that woke first
# took nearly all of a burst (App Runner's and the load balancer's keep-alive
# pools, wrk's 32 connections: 44 of 48 in tests/test_gunicorn.py), and kept
# them, so one core did the work of two (the bench's rate halved in such runs).
# The price: connections still queued on a worker's socket when that worker
# exits (a timeout kill, a deploy) are reset rather than taken by another.
reuse_port = True
# No gunicorn access log: the app writes one JSON line per request itself
# (diary/logs.py), with the request id and user that gunicorn cannot know.
accesslog = None
errorlog = "-"
# gunicorn's own lines (start, worker boot and exit, timeouts) as JSON lines on
# stdout like the app's, through the same formatter that masks secrets.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "diary.infra.logs.JsonFormatter"}},
    "handlers": {"stdout": {"class": "diary.infra.logs.StdoutHandler", "formatter": "json"}},
    "root": {"level": "WARNING", "handlers": ["stdout"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
    },
}
# Import the app once in the master: workers fork with it loaded (less memory,
# and configuration errors stop the server before any worker starts).
preload_app = True


def when_ready(server: object) -> None:
    """Move the preloaded app's objects out of the collector's reach before forking.

    The workers share the master's pages until something writes to them; a full
    collection in a worker writes to every object it visits, so each worker
    soon held its own copy of the whole import graph (bench: +30 MB per worker
    after the first load). Frozen objects are never visited, so the pages stay
    shared.
    """
    gc.collect()
    gc.freeze()


forwarded_allow_ips = "*"
# No gunicornc control socket: nothing here uses it, the container's user has
# no writable home for it, and instances sharing a machine would share its path.
control_socket_disable = True
