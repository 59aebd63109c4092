"""`a + b mod m = c`: addition modulo a fixed modulus (the classic grokking task)."""

from __future__ import annotations

import re2
from pydantic import Field, field_validator, model_validator

from curation.skills.families.base import (
    MAX_LABELS,
    FamilyParams,
    OperandPairFamily,
    check_range,
)
from curation.skills.families.template import Field as TemplateField
from curation.skills.families.template import check_template
from curation.skills.instance import Instance

MAX_MODULUS = 1_000_000_000


class ModularAdditionParams(FamilyParams):
    modulus: int = Field(97, ge=2, le=MAX_MODULUS, description="The modulus m.")
    operand_min: int = Field(0, ge=0, le=MAX_MODULUS, description="Smallest operand a or b.")
    operand_max: int | None = Field(
        None, ge=0, le=MAX_MODULUS, description="Largest operand a or b (default: modulus - 1)."
    )
    template: str = Field(
        "{a} + {b} mod {m} = {c}",
        description="Rendering; fields {a} {b} {c} and optionally {m}; must end with {c}.",
    )

    @field_validator("template")
    @classmethod
    def _template(cls, template: str) -> str:
        return check_template(template, {"a", "b", "c"}, {"m"}, answer="c")

    @model_validator(mode="after")
    def _operand_range(self) -> ModularAdditionParams:
        if self.operand_max is None:
            self.operand_max = self.modulus - 1
        check_range("operand_min", self.operand_min, "operand_max", self.operand_max)
        return self


class ModularAddition(OperandPairFamily[ModularAdditionParams]):
    name = "modular_addition"
    Params = ModularAdditionParams

    def __init__(self, params: ModularAdditionParams):
        number = TemplateField(r"\d+")
        fields = {
            "a": number,
            "b": number,
            "c": number,
            "m": TemplateField(re2.escape(str(params.modulus))),
        }
        super().__init__(params, params.template, fields, answer="c")
        self.low = params.operand_min
        self.high = params.operand_max if params.operand_max is not None else params.modulus - 1

    def _render(self, a: int, b: int) -> Instance:
        m = self.params.modulus
        return self.template.render({"a": str(a), "b": str(b), "m": str(m), "c": str((a + b) % m)})

    def labels(self) -> list[str] | None:
        """The residues 0 .. modulus - 1 (None above MAX_LABELS: too many to score)."""
        m = self.params.modulus
        return [str(c) for c in range(m)] if m <= MAX_LABELS else None

    def stratum(self, instance: Instance) -> str | None:
        """`wrap`: a + b >= modulus, where the answer is not the plain sum."""
        values = self.values(instance)
        return "wrap" if int(values["a"]) + int(values["b"]) >= self.params.modulus else None
