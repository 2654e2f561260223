# syntax=docker/dockerfile:1
# One image for every veille service: `docker run veille run classifier`, `... run ingest-rss`, ...
# Stage 1 builds a virtual environment with veille and its dependencies; stage 2 copies only that
# venv onto a clean slim Python, runs as an unprivileged user and holds no secret (they come from
# the environment or Docker secrets at run time: VEILLE_*_FILE).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, so that a code change does not reinstall them.
COPY pyproject.toml README.md ./
COPY shared/veille/__init__.py shared/veille/__init__.py
RUN mkdir -p services veille_cli && touch services/__init__.py veille_cli/__init__.py \
    && pip install --quiet --upgrade pip \
    && pip install --quiet . \
    && pip uninstall --quiet --yes veille
# Then veille itself (a wheel, not editable).
COPY shared ./shared
COPY services ./services
COPY veille_cli ./veille_cli
RUN pip install --quiet --no-deps . \
    && veille version \
    && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
    && rm -rf /opt/venv/lib/python3.11/site-packages/pip /opt/venv/bin/pip*

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="veille" \
      org.opencontainers.image.description="veille services: ingestors, classifier, notifier" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 veille \
    && useradd --system --uid 10001 --gid veille --home-dir /var/lib/veille --no-create-home \
       --shell /usr/sbin/nologin veille \
    && mkdir -p /var/lib/veille /etc/veille \
    && chown veille:veille /var/lib/veille
COPY --from=builder /opt/venv /opt/venv
COPY deploy/docker/healthcheck.py /usr/local/lib/veille/healthcheck.py
COPY examples/veille.yaml /etc/veille/veille.yaml
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VEILLE_CONFIG=/etc/veille/veille.yaml \
    VEILLE_HTTP_HOST=0.0.0.0 \
    VEILLE_HTTP_PORT=8080 \
    VEILLE_LOG_FORMAT=json \
    VEILLE_DATA_DIR=/var/lib/veille
USER 10001:10001
WORKDIR /var/lib/veille
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/lib/veille/healthcheck.py", "/readyz"]
ENTRYPOINT ["veille"]
CMD ["--help"]
