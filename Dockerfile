# syntax=docker/dockerfile:1
# diary: build with `docker build -t diary .`, run with `docker run -p 8080:8080 ...`.
# See docs/operations.md for the environment and deploy/README.md for AWS.

# --- build: every dependency as a wheel (compilers, caches stay in this stage) ---
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /build
COPY requirements.txt .
RUN pip wheel --wheel-dir /wheels -r requirements.txt

# --- runtime: the wheels installed into a virtualenv, the app, a non-root user ---
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    FLASK_APP=diary \
    PORT=8080 \
    MALLOC_ARENA_MAX=2
# MALLOC_ARENA_MAX: glibc gives each thread its own malloc arena by default,
# which inflates resident memory with gthread workers (bench/: the 400 MB
# target for 2 workers was missed at 534 MB PSS before this was set).

# The wheels are mounted, not copied: they never become a layer of this image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,source=requirements.txt,target=/tmp/requirements.txt \
    python -m venv /opt/venv \
    && pip install --no-index --find-links=/wheels -r /tmp/requirements.txt

RUN groupadd --system --gid 10001 diary \
    && useradd --system --uid 10001 --gid diary --no-log-init --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin diary

WORKDIR /app
# Only what runs. The code stays owned by root: the service cannot rewrite itself.
COPY diary/ diary/
COPY migrations/ migrations/
COPY templates/ templates/
COPY static/ static/
COPY wsgi.py gunicorn.conf.py docker-entrypoint.sh ./
# The instance folder (embedded SQLite, local photos) is the one writable place.
RUN mkdir -p /app/instance && chown diary:diary /app/instance

USER 10001:10001
EXPOSE 8080
# App Runner and ECS use their own HTTP checks on /healthz; this serves `docker run`.
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=2)"]
ENTRYPOINT ["/app/docker-entrypoint.sh"]
