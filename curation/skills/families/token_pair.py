"""`TOK1 TOK2 LABEL`: the paper's 3-token tasks over K vocabulary items.

The K items are drawn from the vocabulary with `seed`; the order of the draw is
the hidden arrangement. Rule `order`: LABEL is "<" when TOK1 comes before TOK2
in the hidden order, else ">" (pairs of distinct items: K*(K-1) instances).
Rule `mod_add`: with i, j the positions of TOK1, TOK2, LABEL is the item at
position (i + j) mod K (all pairs: K*K instances).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Literal

from pydantic import Field, model_validator

from curation.skills.families.base import MAX_LABELS, TemplateFamily
from curation.skills.families.template import Field as TemplateField
from curation.skills.families.tokens import TokenParams, alternation
from curation.skills.instance import Instance

MAX_ITEMS = 1000


class TokenPairParams(TokenParams):
    rule: Literal["order", "mod_add"] = Field("order", description="Which task: order or mod_add.")
    k: int = Field(100, ge=2, le=MAX_ITEMS, description="Number of items K.")

    @model_validator(mode="after")
    def _enough_items(self) -> TokenPairParams:
        self.pick(self.k, "k")
        return self


class TokenPair(TemplateFamily[TokenPairParams]):
    name = "token_pair"
    Params = TokenPairParams

    def __init__(self, params: TokenPairParams):
        self.items = params.pick(params.k, "k")
        item = TemplateField(alternation(self.items))
        labels = TemplateField("[<>]", word=False) if params.rule == "order" else item
        fields = {"x": item, "y": item, "label": labels}
        super().__init__(params, "{x} {y} {label}", fields, answer="label")

    def _render(self, i: int, j: int) -> Instance:
        if self.params.rule == "order":
            label = "<" if i < j else ">"
        else:
            label = self.items[(i + j) % len(self.items)]
        return self.template.render({"x": self.items[i], "y": self.items[j], "label": label})

    @property
    def size(self) -> int:
        k = len(self.items)
        return k * (k - 1) if self.params.rule == "order" else k * k

    def _enumerate(self) -> Iterator[Instance]:
        k = range(len(self.items))
        distinct = self.params.rule == "order"
        return (self._render(i, j) for i in k for j in k if not (distinct and i == j))

    def labels(self) -> list[str] | None:
        """`<` and `>` for rule order; the K items for mod_add (None above MAX_LABELS)."""
        if self.params.rule == "order":
            return ["<", ">"]
        return list(self.items) if len(self.items) <= MAX_LABELS else None

    def stratum(self, instance: Instance) -> str | None:
        """mod_add: `wrap` when i + j >= K (the answer is not the item at i + j)."""
        if self.params.rule == "order":
            return None
        values = self.values(instance)
        i, j = self.items.index(values["x"]), self.items.index(values["y"])
        return "wrap" if i + j >= len(self.items) else None

    def draw(self, rng: random.Random) -> Instance:
        k = len(self.items)
        while True:
            i, j = rng.randrange(k), rng.randrange(k)
            if i != j or self.params.rule == "mod_add":
                return self._render(i, j)
