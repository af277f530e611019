# syntax=docker/dockerfile:1
#
# One image for every service of docker-compose.yml: the Dagster code server (which also runs the
# runs), the Dagster webserver and daemon, and the OAuth connector app. Only the command differs.
#
#   docker compose build          # or: docker build -t jira-pipeline:local .

# ---- build: turn the source tree into a wheel ------------------------------------------------------
# A wheel (not `pip install -e`, not the source tree on PYTHONPATH) so the runtime stage holds exactly
# what pyproject.toml declares and nothing from the build context.
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY jira_pipeline ./jira_pipeline
# jira_pipeline_tests ships in the wheel (pyproject includes `jira_pipeline*`): `jira-pipeline demo`
# runs against its Jira simulator.
COPY jira_pipeline_tests ./jira_pipeline_tests
RUN pip wheel --no-deps --wheel-dir /wheels .

# ---- runtime ----------------------------------------------------------------------------------------
FROM python:3.11-slim

# PYTHONDONTWRITEBYTECODE is deliberately NOT set: pip compiles every module to .pyc while installing
# (as root, below), so the non-root runtime user never needs to write into the venv and containers
# start without recompiling dagster on every boot.
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    DAGSTER_HOME=/opt/dagster/home \
    JIRA_PARQUET_DIR=/data/parquet

# All dependencies come as manylinux wheels (psycopg[binary], psycopg2-binary, pyarrow, grpcio):
# no compiler in the image. The Dagster set is pinned exactly in pyproject.toml
# (dagster==1.13.27, dagster-webserver==1.13.27, dagster-postgres==0.29.27, dagster-dg-cli==1.13.27).
COPY --from=build /wheels /tmp/wheels
RUN python -m venv "$VIRTUAL_ENV" \
    && pip install /tmp/wheels/*.whl \
    && pip check \
    && rm -rf /tmp/wheels

# Non-root runtime user. $DAGSTER_HOME/storage (compute logs) and /data/parquet are owned by it so
# that the named volumes docker-compose.yml mounts there inherit that ownership when first created.
RUN groupadd --system --gid 10001 jira \
    && useradd --system --uid 10001 --gid jira --home-dir "$DAGSTER_HOME" --shell /usr/sbin/nologin jira \
    && mkdir -p "$DAGSTER_HOME/storage" /data/parquet \
    && chown -R jira:jira "$DAGSTER_HOME" /data

# Production instance + workspace (root-owned, read-only for the runtime user).
COPY --chown=root:root --chmod=0644 dagster.yaml workspace.yaml $DAGSTER_HOME/

USER jira
WORKDIR $DAGSTER_HOME

EXPOSE 3000 4000 8000

# Default: the code server. docker-compose.yml sets each service's command explicitly.
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "jira_pipeline.definitions"]
