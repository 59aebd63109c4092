# `make demo` and `make test` work from a fresh clone: both create .venv and install the
# locked versions first (requirements/lock.txt; see requirements/README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV := VIRTUAL_ENV=$(VENV) $(VENV)/bin/uv
LOCK := requirements/lock.txt
# torch is not in the lock: on a CPU machine this takes the CPU wheel; on a GPU machine
# `make install TORCH_SPEC=torch==2.13.0 TORCH_INDEX=` keeps PyPI's CUDA build.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
PYTEST_ARGS ?=
# What the MDS read-back test imports (no dependencies resolved: the venv provides numpy).
MDS_READER = mosaicml-streaming==0.13.0 transformers==5.25.0 regex==2026.12.2 \
  safetensors==0.8.0 python-snappy==0.7.3 cramjam==2.14.0 zstd==1.5.7.2 catalogue==2.0.10
# Where `make lock` finds the CPU torch wheel it resolves torch's own dependencies with:
# this machine's wheel folder if it has one, else PyTorch's CPU index.
TORCH_SOURCE ?= $(if $(wildcard /opt/wheels/torch-*),--find-links /opt/wheels,--index https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)

.PHONY: install demo study-demo test test-latest lock lint format bench clean

install: $(VENV)/.installed

# 1. uv, pinned and hash-checked (requirements/uv.txt); 2. the lock, hash-checked, without
# resolving anything (uv: ~30x faster than pip here); 3. torch with pip (which finds the
# CPU wheel on this machine's disk), constrained by the lock (pip will not take hashed
# constraints, so the pins alone); 4. our two packages, editable; 5. the set is consistent;
# 6. openapi-python-client in a virtualenv of its own (.venv/codegen, for
# tests/clients/test_generated_client.py): its caps would lower the service's pins.
# 7. mosaicml-streaming, only to read the MDS export back in tests, in a folder of its own
# without its dependencies (.venv/mds-reader; its pins, numpy < 2.2 and xxhash < 4, cannot
# join the lock; tests/curation/mixture/test_exports.py runs it on the venv's numpy).
$(VENV)/.installed: pyproject.toml clients/python/pyproject.toml $(LOCK) requirements/uv.txt requirements/codegen.txt requirements/mds-reader.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements/uv.txt
	$(UV) pip install --quiet --require-hashes --no-deps -r $(LOCK)
	grep -E '^[A-Za-z0-9]' $(LOCK) | sed -e 's/ *\\$$//' > $(VENV)/constraints.txt
	$(PY) -m pip install --quiet -c $(VENV)/constraints.txt "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(UV) pip install --quiet --no-deps -e "./clients/python[cli]" -e ".[all,dev,bench]"
	$(UV) pip check
	$(PYTHON) -m venv --without-pip $(VENV)/codegen
	VIRTUAL_ENV=$(VENV)/codegen $(VENV)/bin/uv pip install --quiet --require-hashes --no-deps -r requirements/codegen.txt
	$(UV) pip install --quiet --require-hashes --no-deps --target $(VENV)/mds-reader -r requirements/mds-reader.txt
	touch $@

# Re-resolve the lock from pyproject.toml's floors (newest allowed versions), then the
# images' subsets of it (service.txt: the cpu image; all.txt: the cuda image), pinned to
# the same versions.
UV_COMPILE = $(abspath $(VENV))/bin/uv pip compile ../pyproject.toml --generate-hashes \
  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --constraint torch.txt $(TORCH_SOURCE) --custom-compile-command "make lock" \
  --no-emit-package torch --no-emit-package skillmix-client
lock: install
	cd requirements && $(UV_COMPILE) --extra all --extra dev --extra bench --output-file lock.txt
	grep -E '^[A-Za-z0-9]' $(LOCK) | sed -e 's/ *\\$$//' > requirements/.pins.txt
	cd requirements && for part in service all; do \
	  $(UV_COMPILE) --extra $$part --constraint .pins.txt --output-file $$part.txt || exit 1; done
	cd requirements && echo uv | $(abspath $(VENV))/bin/uv pip compile - --generate-hashes \
	  --python-version 3.11 --constraint .pins.txt --custom-compile-command "make lock" \
	  --output-file uv.txt
	rm requirements/.pins.txt
	cd requirements && echo openapi-python-client==0.29.1 | $(abspath $(VENV))/bin/uv pip compile - \
	  --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --custom-compile-command "make lock" --output-file codegen.txt
	cd requirements && printf '%s\n' $(MDS_READER) | $(abspath $(VENV))/bin/uv pip compile - \
	  --no-deps --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --custom-compile-command "make lock" --output-file mds-reader.txt
	@! grep -nE '^(nvidia-|triton|cuda-)' requirements/*.txt || (echo "a lock holds a CUDA build's packages: resolve torch from a CPU wheel (TORCH_SOURCE)"; exit 1)

# Not in CI: the newest versions pyproject.toml allows, in their own venv, to see drift early.
test-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/pip install --quiet "$(TORCH_SPEC)"
	.venv-latest/bin/pip install --quiet --upgrade -e "./clients/python[cli]" -e ".[all,dev,bench]"
	.venv-latest/bin/pip list --format=freeze > .venv-latest/versions.txt
	.venv-latest/bin/python -m pytest $(PYTEST_ARGS)

demo: install
	$(VENV)/bin/skillmix demo

# SCIENCE.md "Studies" protocol (a), cut to fit 30 minutes on 2 cores: 5 doses + the
# natural baseline x 4 seeds = 24 runs (the full protocol, 64 runs, is
# benchmarks/study_protocols.py --only dose).
study-demo: install
	$(VENV)/bin/skillmix demo --study dose --seeds 4 --doses 1,2,3,4,6

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .venv-latest .skillmix .pytest_cache .mypy_cache .ruff_cache
