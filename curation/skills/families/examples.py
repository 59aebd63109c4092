"""User-supplied prompt/answer pairs, rendered with a template.

Its detector is the literal set of the rendered texts (a keywords detector,
case-insensitive, whole words), so it finds exactly those instances.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict, Field, field_validator

from curation.skills.detectors import ConcreteDetector, KeywordsDetector
from curation.skills.families.base import Family, FamilyParams
from curation.skills.families.template import check_template, render, template_fields
from curation.skills.instance import Instance, normalise

MAX_EXAMPLES = 10_000
MAX_EXAMPLE_CHARS = 2000


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=MAX_EXAMPLE_CHARS)
    answer: str = Field(min_length=1, max_length=MAX_EXAMPLE_CHARS)


class ExamplesParams(FamilyParams):
    examples: list[Example] = Field(
        min_length=1, max_length=MAX_EXAMPLES, description="The prompt/answer pairs."
    )
    template: str = Field(
        "{prompt} {answer}",
        description="Rendering; fields {prompt} and {answer}; must end with {answer}.",
    )

    @field_validator("template")
    @classmethod
    def _template(cls, template: str) -> str:
        return check_template(template, {"prompt", "answer"}, set(), answer="answer")


class Examples(Family[ExamplesParams]):
    name = "examples"
    Params = ExamplesParams

    def __init__(self, params: ExamplesParams):
        super().__init__(params)
        pieces = template_fields(params.template)
        rendered = (
            render(pieces, {"prompt": ex.prompt, "answer": ex.answer}, "answer")
            for ex in params.examples
        )
        distinct: dict[str, Instance] = {}
        for instance in rendered:  # the first of reformatted repeats stands for them all
            distinct.setdefault(instance.key, instance)
        self.instances = list(distinct.values())
        self._by_text = {normalise(i.text): (i.prompt, i.answer) for i in self.instances}

    @property
    def size(self) -> int:
        return len(self.instances)

    def _enumerate(self) -> Iterator[Instance]:
        return iter(self.instances)

    def draw(self, rng: random.Random) -> Instance:
        return rng.choice(self.instances)

    def detector(self) -> ConcreteDetector:
        # Generated from validated examples: the user keyword limits do not apply.
        return KeywordsDetector.model_construct(
            keywords=[instance.text for instance in self.instances],
            case_sensitive=False,
            word_boundaries=True,
        )

    def parse(self, text: str) -> tuple[str, str] | None:
        return self._by_text.get(normalise(text))
