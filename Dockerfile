# syntax=docker/dockerfile:1
# bee_customers_service image: `bee-customers serve` on port 8007.
#
# Two stages. The builder owns Poetry: it exports poetry.lock (main group only, with hashes) to a
# requirements file and installs exactly those pins into /opt/venv. The runtime stage gets only
# that venv and the application code (package, migrations/, alembic.ini): no Poetry, no pip cache,
# no compilers, no tests. It runs as an unprivileged user.

ARG PYTHON_IMAGE=python:3.12-slim

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# Poetry lives in its own venv so it never leaks into the application's.
RUN python -m venv /opt/poetry \
 && /opt/poetry/bin/pip install "poetry>=2.0,<3" "poetry-plugin-export>=1.8"

WORKDIR /app

# Dependencies first: this layer is rebuilt only when the lock changes, not on every code edit.
COPY pyproject.toml poetry.lock README.md ./
RUN /opt/poetry/bin/poetry export --only main --format requirements.txt --output /tmp/requirements.txt \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes --only-binary=:all: -r /tmp/requirements.txt

# The application itself, installed editable (no dependencies: they are all pinned above). The
# package resolves `migrations/` next to itself (cli.MIGRATIONS_DIR), so the code stays at /app
# in both stages and the venv only holds a path entry pointing there, like `make install` does.
COPY bee_customers_service ./bee_customers_service
COPY migrations ./migrations
COPY alembic.ini ./
RUN /opt/venv/bin/pip install --no-deps -e . \
 && /opt/venv/bin/python -m compileall -q /app/bee_customers_service /app/migrations


FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="bee_customers_service" \
      org.opencontainers.image.description="Per-business customer profiles for the BeeConect platform"

# Production defaults. BEE_ENVIRONMENT=production refuses to start without BEE_DATABASE_URL and
# with the development JWT secret: the deployment (docker-compose.yml, Kubernetes) must set
# BEE_DATABASE_URL, BEE_CURSOR_SECRET, BEE_GDPR_FINGERPRINT_KEY and BEE_JWT_SECRET (or
# BEE_JWT_PUBLIC_KEY / BEE_JWT_JWKS_URL).
# BEE_HOST=0.0.0.0: a container must listen beyond its loopback (the service's default is
# 127.0.0.1, and `serve` refuses any other address with the development JWT secret).
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BEE_ENVIRONMENT=production \
    BEE_HOST=0.0.0.0 \
    BEE_PORT=8007 \
    BEE_DATA_DIR=/app/.data

RUN groupadd --system --gid 10001 bee \
 && useradd --system --uid 10001 --gid bee --home-dir /app --no-create-home --shell /usr/sbin/nologin bee

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder --chown=root:root /app /app

WORKDIR /app
# The code is owned by root and read-only for the service; only its data dir is writable.
RUN mkdir -p /app/.data && chown bee:bee /app/.data
# Numeric (the `bee` user above): Kubernetes can only check runAsNonRoot against a number.
USER 10001:10001

EXPOSE 8007

# Liveness without curl (not in slim images): python's urllib against /healthcheck.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('BEE_PORT', '8007')}/healthcheck\", timeout=2).status == 200 else 1)"]

# Access lines come from our structured request logs, not uvicorn's access log. SIGTERM (docker
# stop) drains in-flight requests within --graceful-timeout; keep docker's stop timeout above it.
STOPSIGNAL SIGTERM
CMD ["bee-customers", "serve", "--port", "8007", "--no-access-log"]
