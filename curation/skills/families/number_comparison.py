"""`cmp 47 52 : <`: compare two integers (the task of SCIENCE.md's CPU measurements)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from curation.skills.families.base import (
    FamilyParams,
    OperandPairFamily,
    check_range,
    digits_pattern,
    digits_range,
)
from curation.skills.families.template import Field as TemplateField
from curation.skills.families.template import check_template
from curation.skills.instance import Instance

MAX_DIGITS = 18


class NumberComparisonParams(FamilyParams):
    min_digits: int = Field(2, ge=1, le=MAX_DIGITS, description="Fewest digits of an operand.")
    max_digits: int = Field(2, ge=1, le=MAX_DIGITS, description="Most digits of an operand.")
    template: str = Field(
        "cmp {a} {b} : {c}",
        description="Rendering; fields {a} {b} {c} (the label <, > or =); must end with {c}.",
    )

    @field_validator("template")
    @classmethod
    def _template(cls, template: str) -> str:
        return check_template(template, {"a", "b", "c"}, set(), answer="c")

    @model_validator(mode="after")
    def _digits(self) -> NumberComparisonParams:
        check_range("min_digits", self.min_digits, "max_digits", self.max_digits)
        return self


def label(a: int, b: int) -> str:
    return "<" if a < b else ">" if a > b else "="


class NumberComparison(OperandPairFamily[NumberComparisonParams]):
    name = "number_comparison"
    Params = NumberComparisonParams

    def __init__(self, params: NumberComparisonParams):
        number = TemplateField(digits_pattern(params.min_digits, params.max_digits))
        fields = {"a": number, "b": number, "c": TemplateField("[<>=]", word=False)}
        super().__init__(params, params.template, fields, answer="c")
        self.low, self.high = digits_range(params.min_digits, params.max_digits)

    def _render(self, a: int, b: int) -> Instance:
        return self.template.render({"a": str(a), "b": str(b), "c": label(a, b)})

    def labels(self) -> list[str]:
        return ["<", ">", "="]

    def stratum(self, instance: Instance) -> str | None:
        """`equal_leading_digit`: operands of one length with the same first digit (for
        two-digit operands, the same tens digit), which a leading-digit rule cannot order."""
        values = self.values(instance)
        a, b = values["a"], values["b"]
        return "equal_leading_digit" if len(a) == len(b) and a[0] == b[0] else None
