# syntax=docker/dockerfile:1
# The gateway in a container: `docker build -t agent-gateway .` then
# `docker run -p 8000:8000 -e GATEWAY_API_KEYS='{"me":"sha256:..."}' agent-gateway`.

# -- build: resolve and install the locked dependencies with uv into /app/.venv ----------------
FROM python:3.11-slim AS build
RUN pip install --no-cache-dir "uv>=0.8"
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
# Dependencies first (cached while only the code changes), then the project itself.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY README.md ./
COPY gateway ./gateway
COPY streams ./streams
COPY web ./web
RUN uv sync --frozen --no-dev

# -- runtime: the virtualenv and the code, no build tools, an unprivileged user ----------------
FROM python:3.11-slim AS runtime
RUN useradd --system --uid 10001 --home-dir /app gateway
WORKDIR /app
COPY --from=build --chown=gateway:gateway /app /app
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8000
USER gateway
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
# SIGTERM starts the drain: readiness goes false, runs get GATEWAY_DRAIN_TIMEOUT to finish.
# Give the container at least that long to stop (docker stop -t, terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
# The same console script as `uv run gateway` in the README.
CMD ["gateway"]
