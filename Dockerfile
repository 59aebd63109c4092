# Two targets: `cpu` (the API, migrations and curation workers: no torch) and `cuda`
# (training workers).
#   docker build --target cpu  -t skillmix:cpu  .
#   docker build --target cuda -t skillmix:cuda .
# Both install the locked versions (requirements/README.md), hash-checked, with uv (itself
# pinned and hash-checked), then the two packages of this repository without resolving
# anything again: the image runs what CI ran. tests/dockerfile.py replays this file's COPY
# and install steps in a fresh virtualenv, and tests/service/test_compose.py runs every
# compose service's command from that replay, so a missing path or module fails there.
FROM python:3.11-slim AS base
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 UV_NO_CACHE=1 UV_SYSTEM_PYTHON=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN useradd --create-home --uid 1000 skillmix && mkdir /data && chown skillmix /data
COPY requirements requirements
RUN pip install --require-hashes --no-deps -r requirements/uv.txt

FROM base AS cpu
# The API and the curation worker need the service extra only: service.txt, no torch.
RUN uv pip install --require-hashes --no-deps -r requirements/service.txt
COPY pyproject.toml README.md alembic.ini ./
COPY clients/python clients/python
COPY service service
COPY curation curation
COPY training training
COPY analysis analysis
COPY migrations migrations
RUN uv pip install --no-deps ./clients/python . && uv pip check
USER skillmix

FROM base AS cuda
RUN uv pip install --require-hashes --no-deps -r requirements/all.txt
# torch is not in the lock: PyPI's default build for Linux bundles CUDA, and its nvidia-*
# wheels are the only packages not locked. pip will not take hashed constraints, so the
# pins alone keep torch's own dependencies at the locked versions.
ARG TORCH_SPEC="torch==2.13.0"
RUN grep -E '^[A-Za-z0-9]' requirements/all.txt | sed -e 's/ *\\$//' > requirements/pins.txt && pip install -c requirements/pins.txt "${TORCH_SPEC}"
COPY pyproject.toml README.md alembic.ini ./
COPY clients/python clients/python
COPY service service
COPY curation curation
COPY training training
COPY analysis analysis
COPY migrations migrations
RUN uv pip install --no-deps ./clients/python . && uv pip check
USER skillmix
