"""Where and how torch runs: device choice, mixed precision, process-wide settings.

CUDA trains in bf16 autocast (no loss scaling needed, unlike fp16) with fused
AdamW and optionally torch.compile; CPU trains in fp32, where autocast would only
slow the small matmuls down.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch


def resolve_device(device: str) -> torch.device:
    """ "auto" -> CUDA if available, else CPU; "cuda" without CUDA is an error."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return torch.device(device)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; nothing (fp32) on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def torch_settings(
    device: torch.device, *, deterministic: bool, num_threads: int | None
) -> Iterator[None]:
    """Thread count and deterministic algorithms for a run, restored afterwards."""
    threads, was_deterministic = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
    )
    if num_threads:
        torch.set_num_threads(num_threads)
    if device.type == "cuda" and deterministic:
        # cuBLAS needs this before its first call to be deterministic.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(was_deterministic)
