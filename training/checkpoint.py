"""Atomic checkpoint files and the RNG state that goes into them.

A checkpoint is written with `curation.atomic`: to a temporary file in the same
directory, flushed to disk, and renamed over the old one, so a crash at any moment
leaves either the previous checkpoint or the new one, never a torn file. RNG states
are stored as plain tensors and tuples so the file loads with
`torch.load(weights_only=True)`.

Every checkpoint and result carries the run's identity (what it computes: the
training fields, the mixture's manifest hash, the eval settings), so a resume or
a reuse against a different run fails loudly instead of mixing the two.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from curation.atomic import atomic_file, remove_temporaries
from curation.mixture.format import MANIFEST
from training.data import MixtureReader
from training.evaluate import Evaluator
from training.model import GPT


def save_torch(obj: Any, path: Path) -> None:
    """torch.save `obj` to `path` atomically and durably (fsync before the rename); then
    delete the temporary files that writers killed inside a save of `path` left behind
    (each as large as a checkpoint). A full disk raises `curation.atomic.DiskFull`, naming
    the file and about the space it needs; the previous checkpoint stays."""
    with atomic_file(path, fsync=True, size_hint=tensor_bytes(obj)) as fh:
        torch.save(obj, fh)
    remove_temporaries(path.parent, of=path.name)


def tensor_bytes(obj: Any) -> int:
    """The bytes of the tensors in `obj` (nested dicts, lists, tuples), each storage once
    (tied weights share one): about what torch.save writes, a little less."""
    storages: dict[int, int] = {}

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            storage = value.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(obj)
    return sum(storages.values())


def discard(path: Path) -> None:
    """Delete a checkpoint that is no longer needed, and its temporary files."""
    path.unlink(missing_ok=True)
    remove_temporaries(path.parent, of=path.name)


def load(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    return torch.load(path, map_location=device, weights_only=True)


def save(
    path: Path,
    model: GPT,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    identity: dict[str, Any],
) -> None:
    """A run's checkpoint: one dict, as nanoGPT's. `state` holds the step, the data
    position and the metrics so far."""
    ckpt = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
        "state": state,
        "identity": identity,
        "model_config": asdict(model.config),
    }
    save_torch(ckpt, path)


def restore(
    path: Path, model: GPT, optimizer: torch.optim.Optimizer, identity: dict[str, Any]
) -> dict[str, Any]:
    """Load a checkpoint of the run `identity` into model, optimizer and the RNGs;
    returns its state."""
    device = next(model.parameters()).device
    ckpt = load(path, device)
    check_identity(ckpt["identity"], identity, path)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"])
    return ckpt["state"]


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU and every CUDA device) generator states."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(np.asarray(keys, np.int64)), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def run_identity(
    train: dict[str, Any], mixture: MixtureReader, evaluator: Evaluator
) -> dict[str, Any]:
    """JSON-able identity of a run from its training fields, mixture and eval sets."""
    spec = evaluator.spec
    heldout = b"" if evaluator.heldout is None else evaluator.heldout.numpy().tobytes()
    manifest = (mixture.path / MANIFEST).read_bytes()
    skip = ("skills", "heldout")
    return {
        "train": {k: list(v) if isinstance(v, tuple) else v for k, v in train.items()},
        "mixture_manifest_sha256": hashlib.sha256(manifest).hexdigest(),
        "skills": [[s.id, s.version] for s in spec.skills],
        "eval": {f.name: getattr(spec, f.name) for f in fields(spec) if f.name not in skip},
        "heldout_sha256": hashlib.sha256(heldout).hexdigest(),
    }


def check_identity(found: dict[str, Any], expected: dict[str, Any], where: Path) -> None:
    """Raise ValueError naming what differs when `found` is not `expected`."""
    if found != expected:
        diff = sorted(k for k in expected if found.get(k) != expected[k])
        raise ValueError(f"{where} belongs to a different run (differs in: {', '.join(diff)})")
