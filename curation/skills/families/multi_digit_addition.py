"""`123 + 456 = 579`: addition of integers with a given number of digits."""

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

MAX_DIGITS = 30


class MultiDigitAdditionParams(FamilyParams):
    min_digits: int = Field(3, ge=1, le=MAX_DIGITS, description="Fewest digits of an operand.")
    max_digits: int = Field(3, ge=1, le=MAX_DIGITS, description="Most digits of an operand.")
    template: str = Field(
        "{a} + {b} = {c}", description="Rendering; fields {a} {b} {c}; must end with {c}."
    )

    @field_validator("template")
    @classmethod
    def _template(cls, template: str) -> str:
        return check_template(template, {"a", "b", "c"}, set(), answer="c")

    @model_validator(mode="after")
    def _digits(self) -> MultiDigitAdditionParams:
        check_range("min_digits", self.min_digits, "max_digits", self.max_digits)
        return self


class MultiDigitAddition(OperandPairFamily[MultiDigitAdditionParams]):
    name = "multi_digit_addition"
    Params = MultiDigitAdditionParams

    def __init__(self, params: MultiDigitAdditionParams):
        operand = TemplateField(digits_pattern(params.min_digits, params.max_digits))
        fields = {"a": operand, "b": operand, "c": TemplateField(r"\d+")}
        super().__init__(params, params.template, fields, answer="c")
        self.low, self.high = digits_range(params.min_digits, params.max_digits)

    def _render(self, a: int, b: int) -> Instance:
        return self.template.render({"a": str(a), "b": str(b), "c": str(a + b)})

    def stratum(self, instance: Instance) -> str | None:
        """`carry`: some column's digits sum to 10 or more, so digit-wise addition fails."""
        values = self.values(instance)
        a, b = int(values["a"]), int(values["b"])
        while a or b:
            if a % 10 + b % 10 >= 10:
                return "carry"
            a, b = a // 10, b // 10
        return None
