"""Tiny mixtures and configs: every training test runs in seconds on a CPU."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from tests.training.mixtures import cmp_skill, every, per_batch, prose, write_mixture
from training.evaluate import EvalSpec
from training.trainer import TrainConfig

TINY = {"n_embd": 16, "n_layer": 1, "n_head": 2}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny ops on two OpenMP threads crawl when another process holds a core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def skill():
    return cmp_skill()


@pytest.fixture(scope="session")
def heldout_docs() -> list[str]:
    return list(itertools.islice(prose(1, "heldout"), 10))


@pytest.fixture(scope="session")
def mixture_dir(tmp_path_factory: pytest.TempPathFactory, skill) -> Path:
    """40 batches of 4 x 32 tokens; 2 comparison instances every 3rd batch."""
    out = tmp_path_factory.mktemp("mixture") / "upweighted"
    return write_mixture(
        out, prose(0), n_batches=40, seq_len=32, seqs_per_batch=4,
        skills={"cmp": (skill, every(2, 3))},
    )  # fmt: skip


@pytest.fixture(scope="session")
def baseline_dir(tmp_path_factory: pytest.TempPathFactory, skill) -> Path:
    out = tmp_path_factory.mktemp("mixture") / "baseline"
    return write_mixture(out, prose(0), n_batches=40, seq_len=32, seqs_per_batch=4)


@pytest.fixture(scope="session")
def every_dir(tmp_path_factory: pytest.TempPathFactory, skill) -> Path:
    """40 batches of 4 x 32 tokens; 2 comparison instances every 4th batch, the plan saying
    so (`every {n: 2, k: 4}`: a dosing period of 4)."""
    out = tmp_path_factory.mktemp("mixture") / "every"
    return write_mixture(
        out, prose(0), n_batches=40, seq_len=32, seqs_per_batch=4,
        skills={"cmp": (skill, every(2, 4))}, targets={"cmp": {"every": {"n": 2, "k": 4}}},
    )  # fmt: skip


@pytest.fixture(scope="session")
def dense_dir(tmp_path_factory: pytest.TempPathFactory, skill) -> Path:
    out = tmp_path_factory.mktemp("mixture") / "dense"
    return write_mixture(
        out, prose(0), n_batches=40, seq_len=32, seqs_per_batch=4,
        skills={"cmp": (skill, per_batch(2))},
    )  # fmt: skip


@pytest.fixture
def config() -> TrainConfig:
    return TrainConfig(**TINY, eval_every=10, checkpoint_every=10, warmup=5, lr=1e-2, min_lr=1e-3)


@pytest.fixture
def eval_spec(skill, heldout_docs) -> EvalSpec:
    return EvalSpec(
        skills=[skill], heldout=heldout_docs, n_probe=32, n_seen=16, heldout_tokens=2048
    )
