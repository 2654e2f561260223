# One image for every veille service: `docker run veille run classifier`, `... run ingest-rss`, ...
# Stage 1 builds a virtual environment with veille and its dependencies; stage 2 copies only that
# venv onto a clean Python, runs as an unprivileged user and holds no secret (they come from the
# environment or Docker secrets at run time: VEILLE_*_FILE).
#
# Two ways to build (docs/operations.md, "Building the image"):
#   with internet:  docker build -t veille:local .
#   air-gapped:     make wheelhouse     # pip wheel -w var/wheelhouse on a host that reaches an index
#                   docker build --build-arg PIP_INSTALL_OPTIONS="--no-index --find-links=/wheelhouse" -t veille:local .
# PYTHON_IMAGE may be any Debian-like image with python3 (3.11) and its venv module: the slim Python
# image by default; `make test-docker` uses one made by debootstrap from Debian's packages.
# No `# syntax=` line, so the legacy builder (DOCKER_BUILDKIT=0) builds this file too; instructions
# are few and metadata comes before the large copies, since that builder with the vfs storage
# driver copies the whole file system at every step.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# Empty: pip uses its index as usual. Air-gapped: "--no-index --find-links=/wheelhouse".
ARG PIP_INSTALL_OPTIONS=""
# The wheelhouse when there is one (var/wheelhouse, `make wheelhouse`). The pattern matches nothing
# otherwise, and pyproject.toml keeps the instruction valid then.
COPY pyproject.toml var/wheelhous[e] /wheelhouse/
# Dependencies first, read from pyproject.toml, so that a code change does not reinstall them.
# `python3`, not `python`: Debian's python3 package has no `python` command.
COPY pyproject.toml README.md /src/
RUN python3 -m venv /opt/venv \
    && export PATH=/opt/venv/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    && pip install --quiet $PIP_INSTALL_OPTIONS --upgrade pip \
    && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" \
       > /tmp/requirements.txt \
    && pip install --quiet $PIP_INSTALL_OPTIONS -r /tmp/requirements.txt
# Then veille itself (a wheel, not editable). Its sentiment scorer has an optional C module
# (hatch_build.py): `make wheelhouse` builds veille's wheel on the host, compiler included, into
# var/veille-wheel, and that wheel is installed if it was built from exactly these sources
# (deploy/docker/wheel_matches.py; a stale one fails the build). Otherwise veille is built here, with
# the C module when the base image has a C compiler (the pure-Python scorer otherwise: same scores,
# slower; the build log's "sentiment scorer:" line says which).
COPY shared /src/shared
COPY services /src/services
COPY veille_cli /src/veille_cli
COPY hatch_build.py deploy/docker/wheel_matches.py /src/
COPY pyproject.toml var/veille-whee[l] /veille-wheel/
RUN export PATH=/opt/venv/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    && if ls /veille-wheel/veille-*.whl >/dev/null 2>&1; then \
         python3 /src/wheel_matches.py /veille-wheel/veille-*.whl /src \
         && pip install --quiet --no-index --no-deps /veille-wheel/veille-*.whl; \
       else \
         pip install --quiet $PIP_INSTALL_OPTIONS --no-deps /src; \
       fi \
    && rm -rf /veille-wheel \
    && veille version \
    && python3 -c "from veille.sentiment import speedups; print('sentiment scorer:', speedups.STATUS)" \
    && rm -rf /wheelhouse \
    && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
    && rm -rf /opt/venv/lib/python3.11/site-packages/pip /opt/venv/bin/pip* \
    # test suites and C headers of dependencies: never imported at run time
    && find /opt/venv/lib/python3.11/site-packages -mindepth 2 -type d -name tests -prune -exec rm -rf {} + \
    && rm -rf /opt/venv/lib/python3.11/site-packages/numpy/_core/include \
    # compiled once here: the root file system is read-only at run time, so Python cannot cache
    # what it compiles, and every start of every service would compile its imports again
    && python3 -m compileall -q -j 0 /opt/venv/lib/python3.11/site-packages > /dev/null

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 veille \
    && useradd --system --uid 10001 --gid veille --home-dir /var/lib/veille --no-create-home \
       --shell /usr/sbin/nologin veille \
    && mkdir -p /var/lib/veille /etc/veille /usr/local/lib/veille \
    && chown veille:veille /var/lib/veille
COPY deploy/docker/healthcheck.py /usr/local/lib/veille/healthcheck.py
COPY examples/veille.yaml /etc/veille/veille.yaml
LABEL org.opencontainers.image.title="veille" \
      org.opencontainers.image.description="veille services: ingestors, classifier, notifier" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VEILLE_CONFIG=/etc/veille/veille.yaml \
    VEILLE_HTTP_HOST=0.0.0.0 \
    VEILLE_HTTP_PORT=8080 \
    VEILLE_LOG_FORMAT=json \
    VEILLE_DATA_DIR=/var/lib/veille
# `python` is the venv's (/opt/venv/bin first on PATH), whatever the base image calls its own.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/lib/veille/healthcheck.py", "/readyz"]
# Without arguments `veille` prints its help. Services listen on 8080 (VEILLE_HTTP_PORT; compose's
# `expose`); no EXPOSE, CMD or WORKDIR instruction: each is one more full copy with vfs.
ENTRYPOINT ["veille"]
USER 10001:10001
COPY --from=builder /opt/venv /opt/venv
