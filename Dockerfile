# syntax=docker/dockerfile:1
# plantstream data plane: one image for the ingest, processor and api ECS services.
# Build:  docker build -t plantstream .      Run:  docker run plantstream serve api
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: compilers live here only -----------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# A dependency without a wheel for this platform builds from source here, never at runtime.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
COPY pyproject.toml README.md requirements.lock ./
COPY src ./src
# The wheel also packages the infra helpers (pyproject lists both packages).
COPY infra/plantstream_infra ./infra/plantstream_infra
# The aws extra, and ml (scikit-learn): the web tasks train machine models and the processor
# judges machines with them. The embedded PostgreSQL/Redis (the `embedded` extra) never ship.
RUN pip install -c requirements.lock ".[aws,ml]"

# ---- runtime: the venv and nothing else ----------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
RUN groupadd --system --gid 10001 plantstream \
    && useradd --system --uid 10001 --gid plantstream --no-create-home \
       --home-dir /tmp --shell /usr/sbin/nologin plantstream
COPY --from=builder /opt/venv /opt/venv
# ECS runs the root filesystem read-only; /tmp is the task's writable scratch volume.
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["plantstream"]
CMD ["serve", "all"]
