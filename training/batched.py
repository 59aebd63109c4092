"""Seed-batched training: K seeds of one size and mixture shape as one grouped model.

`train_group` trains K runs that differ only in their seed (and, with one mixture per
member, in the mixture they read) in one process. Their weights are stacked along a
leading member axis (`torch.func.stack_module_state`: tensor `name` of shape (K, ...)),
and `grouped_forward` runs GPT's forward for all K at once: each Linear is one batched
matmul over the member axis (torch.bmm), and the weightless work (attention, GELU, the
loss) runs once over the K x batch rows. One data pipeline, one forward/backward.

Grouped weights, not `torch.func.vmap(functional_call(...))`: measured on this CPU
(benchmarks/RESULTS.md, "Seed-batched training"), vmap ran a group of 8 nano seeds at
0.65x the speed of 8 single runs one after another: torch 2.13 has no vmap batching rule
for the CPU flash-attention kernel, so it falls back to a loop over the members, and it
adds dispatch work per op; grouped weights run at about 1.0x. The cost is a second
statement of GPT's forward; `check_grouped` compares it with model.GPT on the group's
first batch before any training, so a change to model.py that the grouped forward does
not follow fails loudly instead of training a different model.

Each member is the run it stands for, in every observable respect:
- initial weights: each member is built as its single run builds it (seed_everything,
  then GPT(config)), then the K are stacked, so they are equal bit for bit;
- optimizer: one AdamW over the stacked tensors. AdamW is elementwise and its step count
  is the same for every member, so that is K independent AdamWs; the one per-model scalar,
  the gradient-norm clip, is computed per member (`clip_per_member`);
- the loss of member k is the mean cross-entropy over its own batch, and the K losses
  are summed for the backward pass, so each member's gradient is its own;
- data: one shared reader (the same batch for every member), or one reader per member
  (`seed_scope=data`: member k reads its own mixture's batch; batches are stacked);
- evaluation, at the same steps as a single run, loads the member's weights into a
  plain GPT and calls the same Evaluator, so readouts have the same form;
- checkpoints, `model.pt`, `result.json` and the typed events are those of a single run,
  per member, in the member's own directory, with the same identity: a single run resumes
  from a member's checkpoint and reuses its result, and the other way round. Events and
  results name the group (`group`).

Rounding: the grouped forward computes what GPT.forward computes op for op (a batched
matmul per member, one fused layer_norm and one cross_entropy per member, so reductions
sum in a single run's order). On this machine's CPU a member's losses, over 200 steps,
equal its single run's bit for bit (tests/training/test_batched.py asserts relative 1e-4,
the issue's tolerance, since another BLAS may sum a batched matmul in another order). A
resumed group equals an uninterrupted group bit for bit on CPU.

Checkpoints: a group saves every member's checkpoint at the same steps, keeping each
member's previous one as `checkpoint.prev.pt` until the next. A group killed while saving
may leave its members at different steps; it resumes from the last step every member has
a checkpoint of (or from the start), so it loses at most two checkpoint intervals.

torch.compile is not applied to a group (TrainConfig.compile is ignored here).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import stack_module_state

from curation.atomic import write_json_atomic
from training import checkpoint
from training.data import MixtureReader, open_mixture
from training.device import autocast, resolve_device, torch_settings
from training.evaluate import EvalSpec, Evaluator
from training.events import Evaluated, Event, OnEvent, RunFinished, RunKey, RunStarted, StepDone
from training.model import GPT, apply_rotary
from training.sizes import SIZES
from training.trainer import (
    CHECKPOINT,
    EXECUTION_FIELDS,
    RESULT,
    WEIGHTS,
    RunResult,
    TrainConfig,
    eval_steps,
    get_lr,
    load_result,
)

log = logging.getLogger(__name__)

PREVIOUS = "checkpoint.prev.pt"

AUTO_PARAMS = {"cpu": 1, "cuda": 100_000_000}
"""Automatic group size: members x parameters per group at most this, per device kind."""
AUTO_MAX = {"cpu": 1, "cuda": 64}
"""... and at most this many members."""


def auto_seed_group(size: str, device: str) -> int:
    """The automatic number of seeds per group for a model size on a device.

    The rule: as many members as keep members x parameters within AUTO_PARAMS of the
    device kind, at most AUTO_MAX of it, at least 1.
    - CPU: 1 (each run alone). Measured here (benchmarks/RESULTS.md, "Seed-batched
      training"), a CPU training step of `nano` on 16 x 64 tokens is arithmetic, not
      per-operation overhead: a group trains about as many member-steps per CPU second
      as single runs do, so grouping buys nothing there and a single-thread worker per
      run keeps both cores busy with the least coordination. SKILLMIX_SEED_GROUP sets it.
    - CUDA: one small run uses a sliver of a GPU, so groups fill it up to about 100M
      member-parameters: 64 members for nano and micro, 20 for tiny, 3 for small, 1 for
      base (not measured here: no GPU; see the benchmark's --device cuda)."""
    kind = "cuda" if resolve_device(device).type == "cuda" else "cpu"
    n_embd, n_layer, _ = SIZES[size]
    # Parameters of a size without building it: 12 d^2 per block plus the 264-token embedding.
    params = 12 * n_embd * n_embd * n_layer + 264 * n_embd
    return max(1, min(AUTO_MAX[kind], AUTO_PARAMS[kind] // params))


def clip_per_member(grads: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Clip each member's gradient (slice k of every stacked tensor) to global norm
    `max_norm`, as torch.nn.utils.clip_grad_norm_ clips one model's; the K norms."""
    norms = torch.stack([g.flatten(1).float().norm(dim=1) for g in grads]).norm(dim=0)
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))).to(g.dtype))
    return norms


def _linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(K, N, in) x stacked nn.Linear weights (K, out, in) -> (K, N, out)."""
    return torch.bmm(x, weight.transpose(1, 2))


def grouped_forward(model: GPT, params: dict[str, torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
    """GPT.forward for K stacked members: logits (K, batch, time, vocab_size).

    model: a GPT of the members' config (its rotary table and shape are used, not its
    weights); params: its parameters by name, stacked (K, ...); idx: (batch, time) tokens
    every member reads, or (K, batch, time), member k's in row k."""
    cfg = model.config
    wte = params["wte.weight"]
    k, vocab, c = wte.shape
    if idx.dim() == 2:
        idx = idx.expand(k, *idx.shape)
    _, b, t = idx.shape
    if t > cfg.block_size:
        raise ValueError(f"sequence of {t} tokens exceeds block_size {cfg.block_size}")
    rope, h, d = model.rope[:, :t], cfg.n_head, c // cfg.n_head
    # Member k's token i is row k * vocab + i of the stacked embeddings.
    offsets = (torch.arange(k, device=idx.device) * vocab).view(k, 1, 1)
    x = F.embedding(idx + offsets, wte.flatten(0, 1)).view(k, b * t, c)

    def norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        # Per member: one fused layer_norm with the weight sums its gradient in the order a
        # single run does (normalizing all K at once and multiplying by the stacked weights
        # is as fast here, but its weight gradient differs from a single run's in the last
        # bits, and on a chaotic run last bits grow into visible differences).
        return torch.stack([F.layer_norm(x[i], (c,), weight[i]) for i in range(k)])

    for i in range(cfg.n_layer):
        p = f"blocks.{i}."
        q, kk, v = _linear(norm(x, params[p + "ln_1.weight"]), params[p + "attn.qkv.weight"]).split(
            c, dim=2
        )
        # Attention has no weights: the K members' rows are one batch of K x b sequences.
        q, kk, v = (z.reshape(k * b, t, h, d).transpose(1, 2) for z in (q, kk, v))
        q, kk = apply_rotary(q, rope), apply_rotary(kk, rope)
        y = F.scaled_dot_product_attention(q, kk, v, is_causal=True)
        x = x + _linear(y.transpose(1, 2).reshape(k, b * t, c), params[p + "attn.proj.weight"])
        up = _linear(norm(x, params[p + "ln_2.weight"]), params[p + "mlp.up.weight"])
        x = x + _linear(F.gelu(up), params[p + "mlp.proj.weight"])
    x = norm(x, params["ln_f.weight"])
    return _linear(x, wte).view(k, b, t, vocab)[..., : cfg.vocab_size]  # the tied head


def check_grouped(model: GPT, params: dict[str, torch.Tensor], idx: torch.Tensor) -> None:
    """Raise if grouped_forward is not GPT.forward for member 0 (model.py changed)."""
    names = {n for n, _ in model.named_parameters()}
    expected = {"wte.weight", "ln_f.weight"} | {
        f"blocks.{i}.{n}.weight"
        for i in range(model.config.n_layer)
        for n in ("ln_1", "attn.qkv", "attn.proj", "ln_2", "mlp.up", "mlp.proj")
    }
    if names != expected:
        raise RuntimeError(
            f"training.batched.grouped_forward does not know GPT's parameters "
            f"{sorted(names ^ expected)}: update it with model.py"
        )
    first = idx[0] if idx.dim() == 3 else idx
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(params[name][0])
        want = model(first[:1])
        got = grouped_forward(model, {n: t[:1] for n, t in params.items()}, first[:1])[0]
    if not torch.allclose(want.float(), got.float(), rtol=1e-3, atol=1e-4):
        raise RuntimeError(
            "training.batched.grouped_forward disagrees with GPT.forward "
            f"(max difference {(want - got).abs().max().item():.3g}): update it with model.py"
        )


@dataclass
class _Member:
    key: RunKey
    config: TrainConfig
    mixture: MixtureReader
    evaluator: Evaluator
    identity: dict[str, Any]
    out: Path


def train_group(
    configs: Sequence[TrainConfig],
    mixture_dirs: Sequence[str | Path],
    eval_spec: EvalSpec,
    out_dirs: Sequence[str | Path],
    on_event: OnEvent | None = None,
    *,
    keys: Sequence[RunKey] | None = None,
    group: str | None = None,
) -> list[RunResult]:
    """Train (or resume, or return the stored results of) K runs as one batched model.

    configs[k], mixture_dirs[k], out_dirs[k], keys[k]: member k, as trainer.train_run
    takes them. The configs may differ in seed alone; the mixtures must have the same
    batch shape, vocabulary and step count (a list of K readers of one mixture or of K
    variants). `group` names the group in each member's events and result (default: the
    members' keys). A member whose result.json exists is reported and reused; the rest
    train together. If `on_event` raises, every member checkpoints and it propagates.
    """
    k = len(configs)
    if not k or len(mixture_dirs) != k or len(out_dirs) != k or (keys and len(keys) != k):
        raise ValueError("a group needs one config, mixture, out_dir (and key) per member")
    ref = replace(configs[0], seed=0)
    for config in configs:
        if replace(config, seed=0) != ref:
            raise ValueError("the members of a seed group may differ in their seed alone")
    if len({c.seed for c in configs}) != k and len(set(map(str, mixture_dirs))) == 1:
        raise ValueError("a group's members must differ (in seed, or mixture)")
    keys = list(
        keys
        or [
            RunKey(Path(m).name, c.size, c.seed) for c, m in zip(configs, mixture_dirs, strict=True)
        ]
    )
    group = group or ",".join(map(str, keys))
    emit = on_event or (lambda event: None)
    readers: dict[str, MixtureReader] = {}
    members, results = [], {}
    for i, (config, mixture_dir, out_dir) in enumerate(
        zip(configs, mixture_dirs, out_dirs, strict=True)
    ):
        mixture = readers.setdefault(str(mixture_dir), open_mixture(mixture_dir))
        n_steps = mixture.steps_for(config.token_budget)
        evaluator = Evaluator.build(eval_spec, mixture, n_steps)
        fields = {f: v for f, v in asdict(config).items() if f not in EXECUTION_FIELDS}
        identity = checkpoint.run_identity(fields, mixture, evaluator)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if (out / RESULT).exists():
            stored = load_result(out)
            checkpoint.check_identity(stored.identity, identity, out / RESULT)
            emit(RunFinished(keys[i], stored.summary()))
            results[i] = stored
            continue
        members.append((i, _Member(keys[i], config, mixture, evaluator, identity, out)))
    if members:
        device = resolve_device(ref.device)
        with torch_settings(device, deterministic=ref.deterministic, num_threads=ref.num_threads):
            trained = _Group([m for _, m in members], device, group, emit).train()
        for (i, _), result in zip(members, trained, strict=True):
            results[i] = result
    return [results[i] for i in range(k)]


class _Group:
    """The state of a training group: stacked weights, optimizer, per-member metrics."""

    def __init__(self, members: list[_Member], device: torch.device, name: str, emit: OnEvent):
        self.members, self.device, self.name, self.on_event = members, device, name, emit
        first = members[0]
        self.config, shape = first.config, _shape(first.mixture, first.config)
        for m in members[1:]:
            if _shape(m.mixture, m.config) != shape:
                raise ValueError(
                    f"{m.key} and {first.key} differ in batch shape, vocabulary or steps "
                    f"({_shape(m.mixture, m.config)} vs {shape}): they cannot train as a group"
                )
        self.n_steps = shape[-1]
        periods = {m.mixture.dosing_period for m in members}
        if len(periods) > 1:
            raise ValueError(
                "the members' mixtures differ in their dosing periods "
                f"({', '.join(sorted(map(str, periods)))}): a group is read at one phase of one "
                "period (trainer.eval_steps)"
            )
        self.batch_tokens = first.mixture.batch_tokens
        self.model_config = self.config.model_config(
            first.mixture.vocab_size, first.mixture.seq_len
        )
        models = []
        for m in members:  # each as its single run builds it
            checkpoint.seed_everything(m.config.seed)
            models.append(GPT(self.model_config).to(device))
        params, _ = stack_module_state(models)
        self.params: dict[str, torch.Tensor] = params
        self.plain = models[0]  # the skeleton functional_call runs, and the eval model
        self.names = [n for n, _ in self.plain.named_parameters()]
        shapes = dict(self.plain.named_parameters())
        groups = [  # the order of GPT.optimizer_groups, so state indices match a single run's
            {"params": [params[n] for n in self.names if shapes[n].dim() >= 2],
             "weight_decay": self.config.weight_decay},
            {"params": [params[n] for n in self.names if shapes[n].dim() < 2], "weight_decay": 0.0},
        ]  # fmt: skip
        fused = device.type == "cuda"
        self.optimizer = torch.optim.AdamW(
            groups, lr=self.config.lr, betas=self.config.betas, fused=fused
        )
        self.states: list[dict[str, Any]] = [
            {"step": 0, "data_position": 0, "evals": [], "retention_losses": {},
             "seconds": 0.0, "resumes": 0, "train_loss_steps": 0}
            for _ in members
        ]  # fmt: skip
        self.running = torch.zeros(len(members), device=device)  # train loss sums
        self._restore()
        self.started = time.perf_counter()

        self.shared = all(m.mixture is first.mixture for m in members) and (
            not self.config.shuffle_within_batch
        )

    def losses(self, chunk: torch.Tensor) -> torch.Tensor:
        """Each member's mean next-token loss on its rows of `chunk`: shape (K,)."""
        k = len(self.members)
        logits = grouped_forward(self.plain, self.params, chunk[..., :-1])
        targets = chunk[..., 1:].expand(k, *chunk.shape[-2:-1], chunk.shape[-1] - 1)
        # One cross_entropy per member: its mean is summed as a single run's is.
        return torch.stack([
            F.cross_entropy(logits[i].flatten(0, 1), targets[i].flatten()) for i in range(k)
        ])  # fmt: skip

    # -- checkpoints ---------------------------------------------------------------------

    def _restore(self) -> None:
        """Resume from the latest step every member has a checkpoint of (if any)."""
        found: list[dict[int, Path]] = []
        for m in self.members:
            steps = {}
            for name in (PREVIOUS, CHECKPOINT):  # the current one wins a tie
                path = m.out / name
                if path.exists():
                    ckpt = checkpoint.load(path, "cpu")
                    checkpoint.check_identity(ckpt["identity"], m.identity, path)
                    steps[int(ckpt["state"]["step"])] = path
            found.append(steps)
        common = set.intersection(*(set(s) for s in found))
        if not common:
            if any(found):
                log.warning(
                    "group %s: no checkpoint step common to all members; restarting", self.name
                )
            return
        step = max(common)
        loaded = [checkpoint.load(steps[step], self.device) for steps in found]
        with torch.no_grad():
            for name in self.names:
                self.params[name].copy_(torch.stack([c["model"][name] for c in loaded]))
        opt = [c["optimizer"] for c in loaded]
        stacked = {
            "param_groups": opt[0]["param_groups"],
            "state": {
                i: {
                    field: value if field == "step"
                    else torch.stack([o["state"][i][field] for o in opt])
                    for field, value in s.items()
                }
                for i, s in opt[0]["state"].items()
            },
        }  # fmt: skip
        self.optimizer.load_state_dict(stacked)
        for k, c in enumerate(loaded):
            state = c["state"]
            self.running[k] = state.pop("train_loss_sum")
            state["resumes"] += 1
            self.states[k] = state
        log.info("group %s resumes at step %d", self.name, step)

    def _member_weights(self, k: int) -> GPT:
        """The plain model holding member k's weights."""
        with torch.no_grad():
            for name, p in self.plain.named_parameters():
                p.copy_(self.params[name][k])
        return self.plain

    def _member_optimizer(self, k: int) -> dict[str, Any]:
        """Member k's optimizer state_dict, as its single run's AdamW would give it."""
        sd = self.optimizer.state_dict()
        return {
            "param_groups": sd["param_groups"],
            "state": {
                i: {f: v.clone() if f == "step" else v[k].clone() for f, v in s.items()}
                for i, s in sd["state"].items()
            },
        }

    def seconds(self, k: int) -> float:
        return self.states[k]["seconds"] + time.perf_counter() - self.started

    def save(self) -> None:
        """Every member's checkpoint, the previous one kept as PREVIOUS until the next."""
        for k, m in enumerate(self.members):
            state = {**self.states[k], "seconds": self.seconds(k),
                     "train_loss_sum": self.running[k].clone()}  # fmt: skip
            model = self._member_weights(k)
            ckpt = {
                "model": model.state_dict(),
                "optimizer": self._member_optimizer(k),
                "rng": checkpoint.rng_state(),
                "state": state,
                "identity": m.identity,
                "model_config": asdict(self.model_config),
            }
            path = m.out / CHECKPOINT
            if path.exists():
                path.replace(m.out / PREVIOUS)
            checkpoint.save_torch(ckpt, path)

    # -- training ------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        try:
            self.on_event(event)
        except BaseException:
            self.save()  # a cancel keeps the work done so far
            raise

    def evaluate(self, step: int) -> None:
        count = self.states[0]["train_loss_steps"]
        for k, m in enumerate(self.members):
            model = self._member_weights(k)
            model.eval()
            with autocast(self.device):
                measured = m.evaluator.evaluate(model)
            model.train()
            train_loss = self.running[k].item() / count if count else None
            results = {"step": step, "tokens": step * self.batch_tokens,
                       "train_loss": train_loss, **measured,
                       "exposure": m.evaluator.exposure_at(step)}  # fmt: skip
            self.states[k]["evals"].append(results)
            self.states[k]["train_loss_steps"] = 0
            self.emit(Evaluated(m.key, step, results))
        self.running.zero_()

    def probe(self, done: int, retention_at: list[dict[int, list[str]]]) -> None:
        for k, m in enumerate(self.members):
            skill_ids = retention_at[k].get(done)
            if not skill_ids:
                continue
            model = self._member_weights(k)
            model.eval()
            with autocast(self.device):
                for skill_id in skill_ids:
                    probe = m.evaluator.probe_loss(model, skill_id)
                    self.states[k]["retention_losses"].setdefault(skill_id, {})[done] = probe
            model.train()

    def batch(self, step: int) -> torch.Tensor:
        """(B, T) shared by all members, or (K, B, T): member k's batch in row k."""
        config = self.config
        if self.shared:
            return self.members[0].mixture.batch(step)
        return torch.stack([
            m.mixture.batch(step, m.config.seed if config.shuffle_within_batch else None)
            for m in self.members
        ])  # fmt: skip

    def train(self) -> list[RunResult]:
        config, n_steps, k = self.config, self.n_steps, len(self.members)
        start = self.states[0]["step"]
        log.info(
            "%s group %s: %d %s models (%s parameters each) on %s, step %d of %d",
            "resuming" if start else "training", self.name, k, config.size,
            f"{self.plain.n_params():,}", self.device, start, n_steps,
        )  # fmt: skip
        for m in self.members:
            self.emit(RunStarted(m.key, start, n_steps, group=self.name))
        if start == 0 and not self.states[0]["evals"]:
            self.evaluate(0)
        retention_at = [m.evaluator.retention_steps() for m in self.members]
        period = self.members[0].mixture.dosing_period  # the members' one period (__init__)
        eval_at = set(eval_steps(n_steps, config.eval_every, period))
        report_every = max(1, n_steps // 100)
        check_grouped(self.plain, self.params, self.batch(start).to(self.device))
        since = (time.perf_counter(), start)
        tensors = list(self.params.values())
        for step in range(start, n_steps):
            lr = get_lr(step, lr=config.lr, warmup=config.warmup, max_iters=n_steps,
                        min_lr=config.min_lr, schedule=config.lr_schedule,
                        decay_fraction=config.decay_fraction)  # fmt: skip
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            tokens = self.batch(step).to(self.device, non_blocking=True)
            rows = tokens.shape[-2]
            size = config.micro_batch_size or rows
            for lo in range(0, rows, size):
                chunk = tokens[..., lo : lo + size, :]
                with autocast(self.device):
                    losses = self.losses(chunk)
                losses = losses * (chunk.shape[-2] / rows)
                losses.sum().backward()
                self.running += losses.detach()
            for state in self.states:
                state["train_loss_steps"] += 1
            if config.grad_clip:
                clip_per_member([t.grad for t in tensors if t.grad is not None], config.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            done = step + 1
            for state in self.states:
                state["step"] = state["data_position"] = done
            self.probe(done, retention_at)
            if done in eval_at:
                self.evaluate(done)
            if done % config.checkpoint_every == 0 and done < n_steps:
                self.save()
            if done % report_every == 0 or done == n_steps:
                now, trained = time.perf_counter(), done * self.batch_tokens
                rate = (done - since[1]) * self.batch_tokens / max(now - since[0], 1e-9)
                for m in self.members:
                    self.emit(StepDone(m.key, done, n_steps, trained, round(rate), group=self.name))
                since = (now, done)
        return [self.finish(k) for k in range(k)]

    def finish(self, k: int) -> RunResult:
        m, state = self.members[k], self.states[k]
        result = RunResult(
            out_dir=str(m.out),
            mixture_dir=str(m.mixture.path),
            identity=m.identity,
            model={**asdict(self.model_config), "n_params": self.plain.n_params()},
            device=str(self.device),
            steps=self.n_steps,
            tokens=self.n_steps * self.batch_tokens,
            seconds=round(self.seconds(k), 3),
            evals=state["evals"],
            retention=m.evaluator.retention(state["retention_losses"]),
            resumes=state["resumes"],
            group=self.name,
        )
        model = self._member_weights(k)
        weights = {"model": model.state_dict(), "model_config": asdict(self.model_config)}
        checkpoint.save_torch(weights, m.out / WEIGHTS)
        write_json_atomic(m.out / RESULT, asdict(result), indent=1)
        checkpoint.discard(m.out / CHECKPOINT)
        checkpoint.discard(m.out / PREVIOUS)
        self.emit(RunFinished(m.key, result.summary()))
        return result


def _shape(mixture: MixtureReader, config: TrainConfig) -> tuple[int, int, int, int]:
    return (mixture.seq_len, mixture.seqs_per_batch, mixture.vocab_size,
            mixture.steps_for(config.token_budget))  # fmt: skip
