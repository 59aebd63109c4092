# Two targets: `cpu` (API, curation workers) and `cuda` (training workers).
# PyPI's default Linux torch wheel is the CUDA build; for a slim CPU image pass the PyTorch
# CPU wheel index with --build-arg TORCH_PIP_ARGS="--index-url <cpu wheel index>".
FROM python:3.11-slim AS base
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md alembic.ini ./
COPY service service
COPY curation curation
COPY training training
COPY migrations migrations

FROM base AS cpu
ARG TORCH_PIP_ARGS=""
RUN pip install torch ${TORCH_PIP_ARGS} && pip install .

FROM base AS cuda
RUN pip install torch && pip install .
