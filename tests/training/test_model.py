from __future__ import annotations

import pytest
import torch

from training.model import GPT, SIZES, ModelConfig, apply_rotary, rotary_tables


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(**{"n_embd": 16, "n_layer": 1, "n_head": 2, "block_size": 32, **kw}))


def test_logits_cover_the_vocabulary_and_the_embedding_is_padded():
    model = tiny(n_layer=2)
    logits = model(torch.randint(0, 257, (3, 20)))
    assert logits.shape == (3, 20, 257)
    assert model.wte.weight.shape[0] == 264
    assert model.lm_head.weight is model.wte.weight


def test_a_future_token_does_not_change_earlier_logits():
    model = tiny(n_layer=2).eval()
    x = torch.randint(0, 257, (1, 24))
    y = x.clone()
    y[0, 15] = (x[0, 15] + 1) % 257
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.equal(a[:, :15], b[:, :15])
    assert not torch.allclose(a[:, 15:], b[:, 15:])


def test_rotary_scores_depend_on_relative_position_only():
    rope = rotary_tables(16, 8)
    q, k = torch.randn(8), torch.randn(8)

    def score(m: int, n: int) -> torch.Tensor:
        qs = apply_rotary(q.expand(1, 1, 16, 8), rope)[0, 0, m]
        ks = apply_rotary(k.expand(1, 1, 16, 8), rope)[0, 0, n]
        return qs @ ks

    assert torch.allclose(score(5, 2), score(12, 9), atol=1e-5)
    assert not torch.allclose(score(5, 2), score(5, 3), atol=1e-3)


def test_longer_than_block_size_is_refused():
    with pytest.raises(ValueError, match="block_size"):
        tiny()(torch.zeros(1, 33, dtype=torch.long))


@pytest.mark.parametrize(
    "kw, match",
    [({"n_head": 3}, "n_head"), ({"n_layer": 0}, "n_layer"), ({"n_embd": 12, "n_head": 4}, "even")],
)
def test_config_checks(kw, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**{"n_embd": 16, "n_layer": 1, "n_head": 2, **kw})


def test_size_ladder_grows_from_about_0_1m_to_about_100m():
    counts = [
        GPT(ModelConfig.from_size(s, vocab_size=257, block_size=8)).n_params()
        for s in ("nano", "micro", "tiny")
    ]
    assert list(SIZES) == ["nano", "micro", "tiny", "small", "base"]
    assert 0.1e6 < counts[0] < 0.25e6 and counts == sorted(counts)
    n_embd, n_layer, _ = SIZES["base"]
    approx = 12 * n_layer * n_embd**2 + 264 * n_embd  # blocks + embedding, norms aside
    assert 90e6 < approx < 110e6
    with pytest.raises(ValueError, match="unknown model size"):
        ModelConfig.from_size("huge", vocab_size=257, block_size=8)
