"""The CUDA path: bf16 autocast, fused AdamW, torch.compile. Skipped without a GPU."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from training import checkpoint
from training.device import autocast, resolve_device
from training.model import GPT, ModelConfig
from training.trainer import CHECKPOINT, WEIGHTS, train_run

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_auto_is_cpu_without_cuda_and_cuda_is_refused():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    x = torch.ones(2, 2)
    with autocast(torch.device("cpu")):
        assert (x @ x).dtype == torch.float32  # fp32 on CPU


@pytest.mark.gpu
@cuda
def test_bf16_autocast_on_cuda():
    model = GPT(ModelConfig(n_embd=16, n_layer=1, n_head=2, block_size=32)).cuda()
    with autocast(torch.device("cuda")):
        logits = model(torch.randint(0, 257, (2, 16), device="cuda"))
    assert logits.dtype == torch.bfloat16


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("compile", [False, True])
def test_train_and_resume_on_cuda(tmp_path, config, mixture_dir, eval_spec, compile):
    cfg = dataclasses.replace(config, device="cuda", compile=compile)
    full = train_run(cfg, mixture_dir, eval_spec, tmp_path / "full")
    assert full.device.startswith("cuda")
    assert full.final["general_loss"] < full.evals[0]["general_loss"]

    def cancel(fraction: float, message: str) -> None:
        if fraction >= 0.5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, mixture_dir, eval_spec, tmp_path / "resumed", cancel)
    assert (tmp_path / "resumed" / CHECKPOINT).exists()
    train_run(cfg, mixture_dir, eval_spec, tmp_path / "resumed")
    a = checkpoint.load(tmp_path / "full" / WEIGHTS)["model"]
    b = checkpoint.load(tmp_path / "resumed" / WEIGHTS)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-3) for k in a)
