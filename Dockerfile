# syntax=docker/dockerfile:1
# llm-soak: one image for the soak daemon (`soak run`), one-shot CI runs (`soak once`) and the
# mock provider (`soak mock`). Multi-stage: the builder turns the source into a wheel, the
# runtime stage installs only that wheel and its dependencies into a venv and runs as a
# numeric non-root user (Kubernetes' runAsNonRoot can verify a numeric UID, not a name).
#
# The base is pinned by an exact tag (Python patch release and Debian release). For
# reproducible builds pin the digest too:
#   docker build --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:<digest> .
# No HEALTHCHECK: in Kubernetes the probes on /-/healthy and /-/ready do that job.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY soak/ soak/
COPY mock/ mock/
# Wheels for llm-soak and every dependency, so the runtime stage needs no compiler.
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/soak PATH=/opt/soak/bin:$PATH
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/soak \
    && /opt/soak/bin/pip install --no-index --find-links /wheels llm-soak \
    && /opt/soak/bin/pip uninstall -y pip \
    && groupadd --system --gid 10001 soak \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/soak --no-create-home soak \
    && install -d -o 10001 -g 10001 /var/lib/soak /etc/soak
WORKDIR /var/lib/soak
USER 10001:10001
# 9105: the daemon's /metrics, /-/healthy, /-/ready, /-/reload, /runs; 8100: the mock provider.
EXPOSE 9105 8100
ENTRYPOINT ["soak"]
CMD ["run", "--config", "/etc/soak/config.yaml", "--listen", "0.0.0.0:9105", "--log-format", "json"]
