"""gunicorn settings, read from the environment the platform gives us."""

import gc
import os

from diary.config import parse_networks

bind = f"0.0.0.0:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# gthread, plus a deadline for each request's headers (REQUEST_HEADER_TIMEOUT):
# gunicorn itself lets a client that stalls mid-headers hold a thread for good.
worker_class = "diary.infra.gunicorn_worker.ThreadWorker"
# With gthread this is the worker's heartbeat, not a request limit: the worker's
# main loop reports in on its own while request threads run, so `timeout` only
# recycles a worker whose main loop hangs. What bounds a request is the proxy:
# App Runner ends any request at 120 s ("a total of 120 seconds request timeout
# limit", App Runner developer guide, "Developing application code"); the ECS
# Express Mode load balancer (an ALB) has no total limit but closes a connection
# that sends nothing for its idle timeout, 60 s by default (ELB guide, "Edit
# attributes for your Application Load Balancer"), which the client sees as a 504.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
# How long an idle kept-alive connection stays open. It must outlast the proxy's
# own idle timeout, so that the proxy, never gunicorn, closes an idle connection:
# otherwise the proxy can send a request on a connection gunicorn is closing and
# answer it with a 502 (the ALB guide says so and recommends an application idle
# timeout larger than the load balancer's). 125 s is above the ALB's 60 s and
# above the only timeout App Runner documents for its front end (120 s); App
# Runner does not publish its router's idle timeout. Raise it with the ALB's
# idle timeout (deploy/README.md).
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "125"))
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


# The peers whose X-Forwarded-Proto (and the like) gunicorn believes: the same
# TRUSTED_PROXY_CIDRS the app uses for X-Forwarded-For (diary/web/proxies.py), checked
# the same way; nobody when unset, so a client cannot claim HTTPS or an address.
forwarded_allow_ips = ",".join(
    str(network) for network in parse_networks(os.environ.get("TRUSTED_PROXY_CIDRS", ""))
)
# No gunicornc control socket: nothing here uses it, the container's user has
# no writable home for it, and instances sharing a machine would share its path.
control_socket_disable = True
