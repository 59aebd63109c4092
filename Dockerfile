# Two targets: `cpu` (API, curation workers) and `cuda` (training workers).
#   docker build --target cpu  -t skillmix:cpu  .
#   docker build --target cuda -t skillmix:cuda .
# torch is installed first and on its own, as `make install` does: the cpu target takes
# PyTorch's CPU wheel index (a few hundred MB instead of the multi-GB CUDA build that PyPI's
# default Linux wheel is); the cuda target takes PyPI's default, which bundles CUDA.
FROM python:3.11-slim AS base
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN useradd --create-home --uid 1000 skillmix && mkdir /data && chown skillmix /data
COPY pyproject.toml README.md alembic.ini ./
COPY service service
COPY curation curation
COPY training training
COPY migrations migrations

FROM base AS cpu
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX_URL="https://download.pytorch.org/whl/cpu"
RUN pip install "${TORCH_SPEC}" --index-url "${TORCH_INDEX_URL}" && pip install .
USER skillmix

FROM base AS cuda
ARG TORCH_SPEC="torch==2.13.0"
RUN pip install "${TORCH_SPEC}" && pip install .
USER skillmix
