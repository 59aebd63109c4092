"""A small decoder-only transformer, nanoGPT style, readable in one sitting.

Pre-norm blocks (LayerNorm without bias), rotary positions (RoPE) on queries
and keys, causal self-attention through `scaled_dot_product_attention(is_causal=True)`
(flash or memory-efficient kernels on CUDA), a GELU MLP of width 4d, and the
output head tied to the token embedding. No dropout: verification runs see each
token once.

Positions are rotary rather than learned because a skill is met at two kinds of
offsets: a mixture places instances at position 0 of a sequence (and evaluation
reads them there), while the instances a corpus holds naturally sit anywhere.
Rotary attention depends on relative offsets only, so what a model learns from
either transfers to the other.

The size ladder (vocabulary 256 bytes + EOS, padded to 264; a mixture built in a Hugging Face
tokenizer sizes the embedding to its vocabulary, so a 32k BPE adds 32k x n_embd; parameters measured
with `GPT(cfg).n_params()`, tied head counted once; rotary positions have no
parameters, so the count does not depend on the context length):

| name  | n_embd | n_layer | n_head | params |
|-------|--------|---------|--------|--------|
| nano  | 64     | 2       | 4      | 0.12M  |
| micro | 128    | 4       | 4      | 0.82M  |
| tiny  | 256    | 6       | 8      | 4.8M   |
| small | 512    | 8       | 8      | 25.3M  |
| base  | 768    | 14      | 12     | 99.3M  |

`nano` is the d=64, 2-layer model that SCIENCE.md measured on CPU: about 100 s
for 5000 steps of 16 x 64 tokens on one thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.sizes import SIZES

VOCAB_MULTIPLE = 8


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a GPT. Build one by name with `ModelConfig.from_size`."""

    vocab_size: int = 257
    """Tokens the data can contain (bytes: 256 + EOS); the embedding is padded past it."""
    block_size: int = 64
    """Longest input the model accepts (the mixture's seq_len - 1 is enough); sizes the
    rotary tables only."""
    n_embd: int = 64
    """Residual stream width d."""
    n_layer: int = 2
    """Number of transformer blocks."""
    n_head: int = 4
    """Attention heads per block; must divide n_embd."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_embd", "n_layer", "n_head"):
            if getattr(self, name) < 1:
                raise ValueError(f"ModelConfig.{name} must be positive, got {getattr(self, name)}")
        if self.n_embd % self.n_head or (self.n_embd // self.n_head) % 2:
            raise ValueError(
                f"n_head ({self.n_head}) must divide n_embd ({self.n_embd}) into even head widths"
            )

    @property
    def padded_vocab_size(self) -> int:
        """vocab_size rounded up to a multiple of 8, for friendlier matmul shapes."""
        return -(-self.vocab_size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE

    @classmethod
    def from_size(cls, size: str, *, vocab_size: int, block_size: int) -> ModelConfig:
        if size not in SIZES:
            raise ValueError(f"unknown model size {size!r}; sizes are {', '.join(SIZES)}")
        n_embd, n_layer, n_head = SIZES[size]
        return cls(vocab_size, block_size, n_embd, n_layer, n_head)


def rotary_tables(block_size: int, head_dim: int, base: float = 10_000.0) -> torch.Tensor:
    """cos and sin of position x frequency, stacked: shape (2, block_size, head_dim // 2)."""
    freqs = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(block_size, dtype=torch.float32), freqs)
    return torch.stack((angles.cos(), angles.sin()))


def apply_rotary(x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """Rotate (batch, heads, time, head_dim) by position; halves pair up (GPT-NeoX layout)."""
    cos, sin = rope[0].to(x.dtype), rope[1].to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        q, k = apply_rotary(q, rope), apply_rotary(k, rope)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.up = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.up(x)))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=False)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=False)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.padded_vocab_size, cfg.n_embd)
        rope = rotary_tables(cfg.block_size, cfg.n_embd // cfg.n_head)
        self.rope: torch.Tensor
        self.register_buffer("rope", rope, persistent=False)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=False)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.padded_vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections so the stream's variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def n_params(self) -> int:
        """Parameter count; the tied head is counted once (parameters() deduplicates)."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits over the real vocabulary, shape (batch, time, vocab_size)."""
        t = idx.shape[1]
        if t > self.config.block_size:
            raise ValueError(f"sequence of {t} tokens exceeds block_size {self.config.block_size}")
        rope = self.rope[:, :t]
        x = self.wte(idx)
        for block in self.blocks:
            x = block(x, rope)
        return self.lm_head(self.ln_f(x))[..., : self.config.vocab_size]

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """Decay matrices (2-D weights) only, as nanoGPT does; norms are not decayed."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
