"""Train one model on one mixture, resumably, and measure its skills as it learns.

`train_run` is the unit of work: one (mixture, model size, seed). It reads the
mixture in order (batch b at step b), evaluates at every `eval_every` steps (phase-aligned
to the dosing period of an `every` mixture: eval_steps) and at the exposure boundaries the
mixture's composition implies, and checkpoints to
`out_dir/checkpoint.pt`. Called again on the same `out_dir`, it resumes from the
checkpoint; once finished it writes `result.json` and `model.pt`, and a later call
returns the stored result without training. It reports what it does as typed events
(training.events) through `on_event`.

On CPU in deterministic mode a resumed run reaches bit-identical weights to an
uninterrupted one: the data order needs no RNG (see data.py), and the model,
optimizer, step and RNG states are all in the checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from curation.atomic import write_json_atomic
from training import checkpoint
from training.data import MixtureReader, micro_batches, open_mixture
from training.device import autocast, resolve_device, torch_settings
from training.evaluate import EvalSpec, Evaluator
from training.events import Evaluated, Event, OnEvent, RunFinished, RunKey, RunStarted, StepDone
from training.model import GPT, SIZES, ModelConfig

log = logging.getLogger(__name__)

LR_SCHEDULES = {
    "cosine": "cosine decay from lr to min_lr over the steps after warmup",
    "constant": "lr after warmup: the final reading is not taken at a learning-rate floor",
    "wsd": "warmup-stable-decay: lr until the last decay_fraction of the steps, then linear "
    "decay to min_lr",
}
"""Learning-rate schedules after the linear warmup (TrainConfig.lr_schedule, get_lr)."""

# Fields that change how a run executes, not what it computes: a run may resume with others.
EXECUTION_FIELDS = ("device", "compile", "num_threads", "checkpoint_every")
CHECKPOINT, RESULT, WEIGHTS = "checkpoint.pt", "result.json", "model.pt"


def run_dir(workdir: str | Path, key: RunKey) -> Path:
    """Where the run `key` of a verification in `workdir` lives: workdir/<arm>/<size>/<seed>."""
    return Path(workdir) / key.arm / key.size / str(key.seed)


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults are the CPU demo scale of SCIENCE.md."""

    size: str = "nano"
    """Named model size (model.SIZES); n_embd / n_layer / n_head override its fields."""
    n_embd: int | None = None
    n_layer: int | None = None
    n_head: int | None = None
    seed: int = 0
    """Seeds the weights (and the in-batch shuffle, if on)."""
    token_budget: int | None = None
    """Training tokens; steps = token_budget // batch_tokens. None: the whole mixture."""
    lr: float = 3e-3
    """Peak learning rate (small models take a large one)."""
    min_lr: float = 3e-4
    """Floor of the decay (cosine, wsd)."""
    warmup: int = 100
    """Linear warmup steps."""
    lr_schedule: str = "cosine"
    """After warmup (LR_SCHEDULES): `cosine` decays to min_lr at the last step, `constant`
    stays at lr, `wsd` (warmup-stable-decay) stays at lr and decays linearly to min_lr
    over the last `decay_fraction` of the steps."""
    decay_fraction: float = 0.2
    """wsd: the share of the steps in its final decay."""
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    """Max global gradient norm; 0 disables clipping."""
    micro_batch_size: int | None = None
    """Sequences per forward pass; gradients accumulate over a batch. None: whole batch."""
    shuffle_within_batch: bool = False
    """Permute sequences inside each batch (seeded by seed and batch); never across batches."""
    eval_every: int = 250
    """Full evaluation every this many steps (and at step 0 and the last step); on a mixture
    dosed `every {n, k}`, every multiple of the period nearest this (eval_steps)."""
    checkpoint_every: int = 1000
    """Checkpoint every this many steps."""
    device: str = "auto"
    """"auto" (CUDA if available), "cpu" or "cuda"."""
    deterministic: bool = True
    """torch.use_deterministic_algorithms for the run (bit-identical resume on CPU)."""
    compile: bool = False
    """torch.compile the model for training (CUDA only; ignored on CPU)."""
    num_threads: int | None = None
    """torch.set_num_threads for this process (1 when runs go in parallel processes)."""

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"unknown model size {self.size!r}; sizes are {', '.join(SIZES)}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {self.device!r}")
        for name in ("eval_every", "checkpoint_every", "warmup"):
            if getattr(self, name) < (0 if name == "warmup" else 1):
                raise ValueError(f"TrainConfig.{name} is out of range: {getattr(self, name)}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError("need 0 <= min_lr <= lr")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"unknown lr_schedule {self.lr_schedule!r}; schedules: {', '.join(LR_SCHEDULES)}"
            )
        if not 0 < self.decay_fraction <= 1:
            raise ValueError("decay_fraction must be in (0, 1]")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ValueError("micro_batch_size must be positive")

    def model_config(self, vocab_size: int, block_size: int) -> ModelConfig:
        base = ModelConfig.from_size(self.size, vocab_size=vocab_size, block_size=block_size)
        overrides = {"n_embd": self.n_embd, "n_layer": self.n_layer, "n_head": self.n_head}
        return ModelConfig(**{**asdict(base), **{k: v for k, v in overrides.items() if v}})


@dataclass
class RunResult:
    """What a finished run measured (stored as out_dir/result.json)."""

    out_dir: str
    mixture_dir: str
    identity: dict[str, Any]
    model: dict[str, Any]
    device: str
    steps: int
    tokens: int
    seconds: float
    evals: list[dict[str, Any]]
    retention: dict[str, dict[str, Any]]
    resumes: int = 0
    group: str | None = None
    """The seed group that trained this run with others (training.batched); None: alone."""
    final: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.final = self.evals[-1] if self.evals else {}

    def summary(self) -> dict[str, Any]:
        """What RunFinished reports (see training.events)."""
        summary = {
            "steps": self.steps, "tokens": self.tokens, "seconds": self.seconds,
            "final": self.final, "resumes": self.resumes,
        }  # fmt: skip
        if self.tokens and self.seconds:
            summary["tokens_per_second"] = round(self.tokens / self.seconds)
        if self.group is not None:
            summary["group"] = self.group
        return summary


def get_lr(
    it: int,
    *,
    lr: float,
    warmup: int,
    max_iters: int,
    min_lr: float,
    schedule: str = "cosine",
    decay_fraction: float = 0.2,
) -> float:
    """The learning rate of step `it` (0-based) of `max_iters`: linear warmup to `lr` over
    `warmup` steps, then by `schedule` (LR_SCHEDULES): `cosine` decay to `min_lr` at
    max_iters; `constant` at `lr`; `wsd` at `lr` until the last `decay_fraction` of the
    steps, then linear decay reaching `min_lr` at max_iters."""
    if it < warmup:
        return lr * (it + 1) / warmup
    if schedule == "constant":
        return lr
    if it >= max_iters:
        return min_lr
    if schedule == "wsd":
        decay = max(1, round(decay_fraction * max_iters))
        start = max(warmup, max_iters - decay)
        if it < start:
            return lr
        return lr - (lr - min_lr) * (it - start + 1) / max(1, max_iters - start)
    if schedule != "cosine":
        raise ValueError(f"unknown lr schedule {schedule!r}; schedules: {', '.join(LR_SCHEDULES)}")
    ratio = (it - warmup) / max(1, max_iters - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def eval_steps(n_steps: int, eval_every: int, period: int | None = None) -> list[int]:
    """The steps after which a run takes a full evaluation (besides step 0), ascending.

    Without a dosing period: every `eval_every` steps, and the last step. With one (a
    mixture dosed `every {n, k}`: MixtureReader.dosing_period), every multiple of the period
    nearest `eval_every` (at least one period), and the last step: each reading during
    training then sits at the same phase of the period, one whole period after a dose and
    just before the next one, so the forgetting between exposures shows in the readings.
    The last reading is one period after the last dose when `n_steps` is a multiple of the
    period (training.verify.align_budget makes it so); otherwise it is recorded with the
    phase it has (Evaluator.exposure_at)."""
    every = eval_every if not period else period * max(1, round(eval_every / period))
    steps = list(range(every, n_steps + 1, every))
    if not steps or steps[-1] != n_steps:
        steps.append(n_steps)
    return steps


def train_run(
    config: TrainConfig,
    mixture_dir: str | Path,
    eval_spec: EvalSpec,
    out_dir: str | Path,
    on_event: OnEvent | None = None,
    *,
    key: RunKey | None = None,
) -> RunResult:
    """Train (or resume, or return the stored result of) one run in `out_dir`.

    `on_event` receives the run's events (training.events), named by `key` (by default
    the mixture folder's name as the arm, and the config's size and seed); if it raises,
    the run checkpoints where it stands and the exception propagates (a cancel).
    """
    key = key or RunKey(Path(mixture_dir).name, config.size, config.seed)
    emit = on_event or (lambda event: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mixture = open_mixture(mixture_dir)
    n_steps = mixture.steps_for(config.token_budget)
    evaluator = Evaluator.build(eval_spec, mixture, n_steps)
    train_fields = {k: v for k, v in asdict(config).items() if k not in EXECUTION_FIELDS}
    identity = checkpoint.run_identity(train_fields, mixture, evaluator)
    if (out / RESULT).exists():
        stored = load_result(out)
        checkpoint.check_identity(stored.identity, identity, out / RESULT)
        emit(RunFinished(key, stored.summary()))
        return stored
    device = resolve_device(config.device)
    with torch_settings(device, deterministic=config.deterministic, num_threads=config.num_threads):
        run = _Run(config, mixture, evaluator, identity, n_steps, out, device, key, emit)
        result = run.train()
    emit(RunFinished(key, result.summary()))
    return result


def load_result(out_dir: str | Path) -> RunResult:
    """The RunResult a finished run stored in `out_dir`."""
    data = json.loads((Path(out_dir) / RESULT).read_text())
    data.pop("final", None)
    return RunResult(**data)


@dataclass
class _Run:
    """The state of one run while it trains (model, optimizer, metrics so far)."""

    config: TrainConfig
    mixture: MixtureReader
    evaluator: Evaluator
    identity: dict[str, Any]
    n_steps: int
    out: Path
    device: torch.device
    key: RunKey
    on_event: OnEvent

    def __post_init__(self) -> None:
        config, mixture, device = self.config, self.mixture, self.device
        checkpoint.seed_everything(config.seed)
        self.model_config = config.model_config(mixture.vocab_size, mixture.seq_len)
        self.model = GPT(self.model_config).to(device)
        groups = self.model.optimizer_groups(config.weight_decay)
        fused = device.type == "cuda"
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, fused=fused)
        self.state: dict[str, Any] = {
            "step": 0, "data_position": 0, "evals": [], "retention_losses": {},
            "seconds": 0.0, "resumes": 0,
            "train_loss_sum": torch.zeros((), device=device), "train_loss_steps": 0,
        }  # fmt: skip
        self.path = self.out / CHECKPOINT
        if self.path.exists():
            self.state = checkpoint.restore(self.path, self.model, self.optimizer, self.identity)
            self.state["resumes"] += 1
        self.started = time.perf_counter()

    def seconds(self) -> float:
        return self.state["seconds"] + time.perf_counter() - self.started

    def save(self) -> None:
        state = {**self.state, "seconds": self.seconds()}
        checkpoint.save(self.path, self.model, self.optimizer, state, self.identity)

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        self.model.eval()
        with autocast(self.device):
            yield
        self.model.train()

    def evaluate(self, step: int) -> None:
        with self.evaluating():
            measured = self.evaluator.evaluate(self.model)
        running, count = self.state["train_loss_sum"], self.state["train_loss_steps"]
        train_loss = running.item() / count if count else None
        running.zero_()
        self.state["train_loss_steps"] = 0
        tokens = step * self.mixture.batch_tokens
        results = {"step": step, "tokens": tokens, "train_loss": train_loss, **measured,
                   "exposure": self.evaluator.exposure_at(step)}  # fmt: skip
        self.state["evals"].append(results)
        self.emit(Evaluated(self.key, step, results))

    def emit(self, event: Event) -> None:
        try:
            self.on_event(event)
        except BaseException:
            self.save()  # a cancel keeps the work done so far
            raise

    def train(self) -> RunResult:
        config, n_steps, mixture = self.config, self.n_steps, self.mixture
        forward = self.model
        if config.compile and self.device.type == "cuda":
            forward = torch.compile(self.model)  # type: ignore[assignment]
        retention_at = self.evaluator.retention_steps()
        eval_at = set(eval_steps(n_steps, config.eval_every, mixture.dosing_period))
        shuffle_seed = config.seed if config.shuffle_within_batch else None
        report_every = max(1, n_steps // 100)
        start = self.state["step"]
        log.info(
            "%s %s model (%s parameters) on %s: step %d of %d",
            "resuming" if start else "training",
            config.size,
            f"{self.model.n_params():,}",
            self.device,
            start,
            n_steps,
        )
        self.emit(RunStarted(self.key, start, n_steps))
        if start == 0 and not self.state["evals"]:
            self.evaluate(0)
        running = self.state["train_loss_sum"]
        since = (time.perf_counter(), start)  # for the throughput StepDone reports
        for step in range(start, n_steps):
            lr = get_lr(step, lr=config.lr, warmup=config.warmup, max_iters=n_steps,
                        min_lr=config.min_lr, schedule=config.lr_schedule,
                        decay_fraction=config.decay_fraction)  # fmt: skip
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            tokens = mixture.batch(step, shuffle_seed).to(self.device, non_blocking=True)
            for chunk in micro_batches(tokens, config.micro_batch_size):
                with autocast(self.device):
                    logits = forward(chunk[:, :-1])
                    loss = F.cross_entropy(logits.flatten(0, 1), chunk[:, 1:].flatten())
                loss = loss * (len(chunk) / len(tokens))
                loss.backward()
                running += loss.detach()
            self.state["train_loss_steps"] += 1
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            done = step + 1
            self.state["step"] = self.state["data_position"] = done
            if done in retention_at:
                with self.evaluating():
                    for skill_id in retention_at[done]:
                        probe = self.evaluator.probe_loss(self.model, skill_id)
                        self.state["retention_losses"].setdefault(skill_id, {})[done] = probe
            if done in eval_at:
                self.evaluate(done)
            if done % config.checkpoint_every == 0 and done < n_steps:
                self.save()
            if done % report_every == 0 or done == n_steps:
                now, trained = time.perf_counter(), done * mixture.batch_tokens
                rate = (done - since[1]) * mixture.batch_tokens / max(now - since[0], 1e-9)
                self.emit(StepDone(self.key, done, n_steps, trained, round(rate)))
                since = (now, done)
        return self.finish()

    def finish(self) -> RunResult:
        result = RunResult(
            out_dir=str(self.out),
            mixture_dir=str(self.mixture.path),
            identity=self.identity,
            model={**asdict(self.model_config), "n_params": self.model.n_params()},
            device=str(self.device),
            steps=self.n_steps,
            tokens=self.n_steps * self.mixture.batch_tokens,
            seconds=round(self.seconds(), 3),
            evals=self.state["evals"],
            retention=self.evaluator.retention(self.state["retention_losses"]),
            resumes=self.state["resumes"],
        )
        weights = {"model": self.model.state_dict(), "model_config": asdict(self.model_config)}
        checkpoint.save_torch(weights, self.out / WEIGHTS)
        write_json_atomic(self.out / RESULT, asdict(result), indent=1)
        checkpoint.discard(self.path)
        log.info("trained %d steps in %.1fs", result.steps, result.seconds)
        return result
