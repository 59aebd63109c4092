"""A process killed while it writes a checkpoint leaves the previous checkpoint loadable
and complete: never a torn file under the checkpoint's name. The writer is
tests/reliability/checkpoint_writer.py, saving through `training.checkpoint.save`."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.reliability.checkpoint_writer import IDENTITY
from training import checkpoint
from training.model import GPT, ModelConfig

KILLED = -9
PARAMETERS = {
    name
    for name, _ in GPT(
        ModelConfig.from_size("micro", vocab_size=257, block_size=64)
    ).named_parameters()
}


def writer(path: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.checkpoint_writer", str(path), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def saved(lines: str) -> list[int]:
    return [int(line.split()[1]) for line in lines.splitlines() if line.startswith("saved ")]


def loaded_step(path: Path) -> int:
    """The checkpoint's step, after checking that every tensor in it belongs to that step."""
    ckpt = checkpoint.load(path)
    checkpoint.check_identity(ckpt["identity"], IDENTITY, path)
    step = ckpt["state"]["step"]
    weights = {k: v for k, v in ckpt["model"].items() if k in PARAMETERS}
    assert len(weights) == len(PARAMETERS)
    momenta = [s["momentum_buffer"] for s in ckpt["optimizer"]["state"].values()]
    assert len(momenta) == len(PARAMETERS)
    for tensor in [*weights.values(), *momenta]:
        assert torch.all(tensor == step), f"a tensor of step {step} holds other values"
    return step


def temporaries(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.iterdir() if p != path)


@pytest.mark.timeout(120)
def test_a_kill_inside_a_save_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    modes = ("torn", "unsynced", "unrenamed")
    paths = {mode: tmp_path / mode / "checkpoint.pt" for mode in modes}
    for path in paths.values():
        path.parent.mkdir()
    procs = {mode: writer(paths[mode], mode) for mode in modes}
    for mode, proc in procs.items():
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == KILLED, (mode, proc.returncode, err[-2000:])
        assert saved(out) == [0], (mode, out)
        # The second save died inside: the first one is what the name holds.
        assert loaded_step(paths[mode]) == 0, mode
        assert len(temporaries(paths[mode])) == 1, "the kill was not inside the save"


@pytest.mark.timeout(180)
def test_random_kills_of_a_process_saving_in_a_loop_never_tear_the_checkpoint(
    tmp_path: Path,
) -> None:
    path = tmp_path / "checkpoint.pt"
    rng = random.Random(7)
    step = -1
    for _ in range(3):
        proc = writer(path, "loop")
        assert proc.stdout is not None
        wanted = rng.randint(1, 3)
        printed: list[int] = []
        while len(printed) < wanted:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else "the writer ended"
            printed += saved(line)
        time.sleep(rng.uniform(0, 0.3))
        proc.kill()
        out, _ = proc.communicate(timeout=30)
        printed += saved(out)
        # It resumed after the last checkpoint and never went back.
        assert printed[0] == step + 1, printed
        # The name holds the last save that returned, or the one the kill interrupted
        # right after its rename; whichever it is, it is whole.
        step = loaded_step(path)
        assert step in (printed[-1], printed[-1] + 1), (step, printed)
        # At most the file of the save this kill interrupted: a save that succeeded
        # since an earlier kill removed that one's.
        assert len(temporaries(path)) <= 1, temporaries(path)
