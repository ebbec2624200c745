"""gunicorn settings, read from the environment the platform gives us."""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
# Under App Runner's and the ECS load balancer's 120 s request limit, so a stuck
# worker is recycled by us rather than cut off by the proxy.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
accesslog = "-"
errorlog = "-"
# Import the app once in the master: workers fork with it loaded (less memory,
# and configuration errors stop the server before any worker starts).
preload_app = True
forwarded_allow_ips = "*"
