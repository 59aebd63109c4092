"""Spacing schedules: how many placements each batch gets, and where inside it.

Pure functions over integers, no I/O, so every promise a plan makes about
spacing is checked without files. A schedule is an int64 array `counts` with one
entry per batch of the mixture.

- `uniform`: as even as possible. Batch b gets floor((b+1)·r) − floor(b·r)
  placements, so 2.5 per batch alternates 2 and 3 and the running total after
  b batches is always floor(b·r). The rate is taken as the nearest fraction with
  a denominator of at most 10^6, so the arithmetic is exact integer arithmetic.
- `every n k`: exactly n placements in batches 0, k, 2k, ... and none elsewhere
  (the paper's "N instances every N batches" runs). The first dose comes in the
  first batch, so a mixture of B batches gets ceil(B / k) doses.
- `random`: the uniform schedule's total, dropped i.i.d. on batches
  (a multinomial with equal probabilities): each batch gets the target rate in
  expectation, and the total is the same as `uniform`'s.
- `clustered`: bursts. The mixture is cut into windows of CLUSTER_WINDOW
  batches; each window's uniform share of placements is spread evenly over a
  burst of CLUSTER_BURST consecutive batches that starts at a random batch of
  the window. 9 batches in 10 get nothing; a burst batch gets 10x the rate.

Inside a batch of S sequences holding C placements, the j-th placement starts
sequence floor(j·S/C) of the batch (`slot_offsets`): evenly spread, first one at
the batch's first sequence. A batch with more placements than sequences (C > S)
shares rows (`shared_rows`): its placements, in placing order, fill rows one after
another (next-fit: one that does not fit in the rest of the row starts the next
group), never across a row boundary, and the G groups start sequences
floor(g·S/G) (`slot_offsets` again). `per_row` is the plan's side of
that rule: how many placements must share a row, hence how many tokens each may
take.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np

RATE_DENOMINATOR = 1_000_000
CLUSTER_WINDOW = 50
"""Batches per window of the `clustered` schedule."""
CLUSTER_BURST = 5
"""Consecutive batches of one burst of the `clustered` schedule (one burst per window)."""


def exact_rate(per_batch: float) -> Fraction:
    """The rate as a fraction: nearest with denominator at most RATE_DENOMINATOR."""
    if per_batch < 0:
        raise ValueError("a rate cannot be negative")
    return Fraction(repr(float(per_batch))).limit_denominator(RATE_DENOMINATOR)


def cumulative(per_batch: float, batches: np.ndarray) -> np.ndarray:
    """floor(b · rate) for each b in `batches`: the uniform running total before batch b."""
    rate = exact_rate(per_batch)
    b = np.asarray(batches, dtype=np.int64)
    if b.size and int(b.max()) * rate.numerator >= 2**62:
        raise ValueError("rate x number of batches is too large for exact arithmetic")
    return (b * rate.numerator) // rate.denominator


def uniform_counts(per_batch: float, n_batches: int) -> np.ndarray:
    """floor((b+1)·r) − floor(b·r) for each batch b: as even as integers allow."""
    return np.diff(cumulative(per_batch, np.arange(n_batches + 1)))


def every_counts(n: int, k: int, n_batches: int) -> np.ndarray:
    """n placements in batches 0, k, 2k, ...; none elsewhere."""
    counts = np.zeros(n_batches, dtype=np.int64)
    counts[::k] = n
    return counts


def random_counts(per_batch: float, n_batches: int, rng: np.random.Generator) -> np.ndarray:
    """The uniform total dropped i.i.d. on the batches (multinomial, equal probabilities)."""
    total = int(cumulative(per_batch, np.array([n_batches]))[0])
    if n_batches == 0:
        return np.zeros(0, dtype=np.int64)
    return rng.multinomial(total, np.full(n_batches, 1.0 / n_batches)).astype(np.int64)


def spread(total: int, n: int) -> np.ndarray:
    """`total` items over `n` slots as evenly as possible (earlier slots get the extra ones)."""
    counts = np.full(n, total // n, dtype=np.int64)
    counts[: total % n] += 1
    return counts


def clustered_counts(
    per_batch: float,
    n_batches: int,
    rng: np.random.Generator,
    window: int = CLUSTER_WINDOW,
    burst: int = CLUSTER_BURST,
) -> np.ndarray:
    """Each window's uniform share spread over one burst at a random place in the window."""
    counts = np.zeros(n_batches, dtype=np.int64)
    edges = cumulative(per_batch, np.arange(0, n_batches + window, window).clip(max=n_batches))
    for w, start in enumerate(range(0, n_batches, window)):
        length = min(window, n_batches - start)
        size = min(burst, length)
        first = start + int(rng.integers(0, length - size + 1))
        counts[first : first + size] = spread(int(edges[w + 1] - edges[w]), size)
    return counts


def slot_offsets(count: int, seqs_per_batch: int) -> list[int]:
    """Sequence offsets inside a batch for `count` placements: floor(j·S/C), evenly spread."""
    if count > seqs_per_batch:
        raise ValueError(f"{count} placements do not fit in {seqs_per_batch} sequences")
    return [j * seqs_per_batch // count for j in range(count)]


def per_row(count: int, seqs_per_batch: int) -> int:
    """Placements that must share a row for `count` to fit in a batch: ceil(C / S), 1 if fewer."""
    return max(1, -(-count // seqs_per_batch))


def shared_rows(lengths: Sequence[int], seqs_per_batch: int, seq_len: int) -> list[list[int]]:
    """A batch's placements (token lengths with their EOS, in placing order) grouped into rows.

    One placement per group while they fit one to a row (C <= S: the layout of a batch that
    shares nothing); otherwise next-fit: each placement joins the current row if it fits in
    the rest of it, else starts the next group. Raises ValueError when a placement is
    longer than a row (it could not share one) or the groups need more rows than the batch has.
    """
    if len(lengths) <= seqs_per_batch:
        return [[j] for j in range(len(lengths))]
    groups: list[list[int]] = []
    room = 0
    for j, tokens in enumerate(lengths):
        if tokens > seq_len:
            raise ValueError(
                f"a placement of {tokens} tokens is longer than a row of {seq_len} tokens, "
                "so it cannot share one"
            )
        if tokens > room:
            groups.append([])
            room = seq_len
        groups[-1].append(j)
        room -= tokens
    if len(groups) > seqs_per_batch:
        raise ValueError(
            f"{len(lengths)} placements of {sum(lengths):,} tokens fill {len(groups)} rows when "
            f"packed, and the batch has {seqs_per_batch} rows of {seq_len} tokens"
        )
    return groups


def target_positions(counts: np.ndarray, seqs_per_batch: int, seq_len: int) -> np.ndarray:
    """Token positions a single-skill mixture places its instances at, for target gap stats.

    A batch that shares rows (more placements than sequences) is taken as its placements
    spread evenly over the batch's tokens (the real positions depend on their lengths)."""
    starts = []
    batch_tokens = seqs_per_batch * seq_len
    for batch in np.flatnonzero(counts):
        count = int(counts[batch])
        base = int(batch) * batch_tokens
        if count > seqs_per_batch:
            starts += [base + j * batch_tokens // count for j in range(count)]
        else:
            starts += [base + o * seq_len for o in slot_offsets(count, seqs_per_batch)]
    return np.asarray(starts, dtype=np.int64)
