"""A process that writes training checkpoints with `training.checkpoint.save`, for
test_checkpoint_kill.py to SIGKILL. Run: python -m tests.reliability.checkpoint_writer
<checkpoint path> <mode>.

It resumes from the checkpoint if there is one, then saves step after step: before step
s is saved every model weight and the optimizer's momentum are set to s, so a checkpoint
whose tensors disagree with its step is torn. It prints "saved <s>" once a save returned.

Modes: `loop` saves until killed; `once` saves one step and exits; the others save once
normally, then SIGKILL themselves inside the second save: `torn` half-way through writing
the file, `unsynced` before the fsync, `unrenamed` after the fsync and before the rename.
"""

from __future__ import annotations

import io
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch

from training import checkpoint
from training.model import GPT, ModelConfig

IDENTITY = {"test": "checkpoint kill"}


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def inject(mode: str, saves: list[int]) -> None:
    """Make the second save die at the `mode` point."""
    real_save, real_fsync, real_replace = torch.save, os.fsync, os.replace

    def torn_save(obj: Any, fh: Any, *args: Any, **kwargs: Any) -> None:
        if not saves:
            return real_save(obj, fh, *args, **kwargs)
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        fh.write(buf.getvalue()[: buf.tell() // 2])
        fh.flush()
        die()

    def unsynced_fsync(fd: int) -> None:
        if saves:
            die()
        real_fsync(fd)

    def unrenamed_replace(src: Any, dst: Any) -> None:
        if saves:
            die()
        real_replace(src, dst)

    if mode == "torn":
        torch.save = torn_save  # type: ignore[assignment]
    elif mode == "unsynced":
        os.fsync = unsynced_fsync
    elif mode == "unrenamed":
        os.replace = unrenamed_replace
    elif mode not in ("loop", "once"):
        raise SystemExit(f"unknown mode {mode!r}")


def main(path: Path, mode: str) -> None:
    torch.manual_seed(0)
    # `micro`: about 10 MB a checkpoint with the optimizer's state, so a save takes a while.
    model = GPT(ModelConfig.from_size("micro", vocab_size=257, block_size=64))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step = 0
    if path.exists():
        step = checkpoint.restore(path, model, optimizer, IDENTITY)["step"] + 1
    saves: list[int] = []
    inject(mode, saves)
    while True:
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float(step))
                optimizer.state[p]["momentum_buffer"] = torch.full_like(p, float(step))
        checkpoint.save(path, model, optimizer, {"step": step}, IDENTITY)
        saves.append(step)
        print(f"saved {step}", flush=True)
        if mode == "once":
            return
        if mode != "loop" and len(saves) > 1:
            raise SystemExit("the injected kill did not happen")
        step += 1


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
