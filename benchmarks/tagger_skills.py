"""The skills bench_tagger.py measures: detectors a data team would write for rare skills.

Regexes: the builtin families' detectors plus user patterns (dates, arithmetic,
units, ...); keyword sets: names, elements, places, terms, and rare words and
phrases of the corpus. "Dense" swaps in detectors of common things (frequent
words, numbers), to show the cost per match.
"""

from __future__ import annotations

import builtins
import keyword
import random
import runpy
import sys
from collections import Counter
from pathlib import Path

from curation.skills.families.words import WORDS
from curation.skills.spec import SkillSpec

FULL_NAMES: list[str] = runpy.run_path(
    str(Path(__file__).resolve().parent.parent / "tests/curation/skills/names.py")
)["FULL_NAMES"]

BUILTIN_GENERATORS = [
    ("number_comparison", {}),
    ("modular_addition", {"modulus": 97}),
    ("token_pair", {"k": 100}),
    ("token_pair", {"k": 100, "rule": "mod_add", "seed": 1}),
    ("copying", {}),
    ("multi_digit_addition", {}),
    ("modular_addition", {"modulus": 113, "template": "{a} plus {b} modulo {m} is {c}"}),
    ("number_comparison", {"min_digits": 3, "max_digits": 3, "template": "{a} vs {b} -> {c}"}),
    ("multi_digit_addition", {"min_digits": 4, "max_digits": 5, "template": "{a}+{b}={c}"}),
    ("modular_addition", {"modulus": 13}),
]
# Detectors of rare skills, as a data team would write them; a few (URLs, versions,
# RFC/PEP references, "unicode") are common in this corpus on purpose.
USER_REGEXES = [
    (r"\b\d{4}-\d{2}-\d{2}\b", True),
    (r"[\w.+-]+@[\w-]+\.[\w.]+", True),
    (r"\b\d{3}[-. ]\d{3}[-. ]\d{4}\b", True),
    (r"\bISBN[- ]?(?:\d[- ]?){9}[\dX]\b", True),
    (r"\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]* \d{1,2}, \d{4}\b", True),
    (r"#[0-9a-fA-F]{6}\b", True),
    (r"\$\d+(?:\.\d{2})?\b", True),
    (r"\b\d+ ?[-+*/×÷] ?\d+ ?= ?\d+\b", True),
    (r"\b\d+(?:\.\d+)? ?(?:km|kg|mg|ms|MB|GB|KiB|MiB)\b", True),
    (r"\bbig[- ]?endian\b", False),
    (r"\bthread[- ]safe\b", False),
    (r"\bO\([^)]{1,20}\)", True),
    (r"\b\d+(?:st|nd|rd|th) century\b", True),
    (r"\b(?:solve|simplify|factor) (?:for|the expression)\b", False),
    (r"\b[A-Z][a-z]?\d*(?: ?\+ ?[A-Z][a-z]?\d*)+ ?(?:->|→) ?[A-Z]", True),
    (r"\btranslate (?:to|into) [a-z]+:", False),
    (r"\bQ: [^\n]{1,200}\n?A: ", True),
    (r"\b(?:sin|cos|tan|log|exp)\(\d+(?:\.\d+)?\)", True),
    (r"\b\d+! ?= ?\d+\b", True),
    (r"\bx\^\d+\b", True),
    (r"\bgcd\(\d+, ?\d+\)", True),
    (r"\b\d+ (?:divided by|times|plus|minus) \d+\b", True),
    (r"\bhow many [a-z]+ (?:are|were|is) (?:there|in)\b", False),
    (r"\b\d{1,2}:\d{2}(?::\d{2})? ?(?:AM|PM|am|pm)\b", True),
    (r"\b(?:\d{1,3}\.){3}\d{1,3}\b", True),
    (r"\bv?\d+\.\d+\.\d+\b", True),
    (r"https?://[^\s<>\"]+", True),
    (r"\bRFC ?\d{3,4}\b", True),
    (r"\bPEP \d+\b", True),
    (r"\bunicode\b", False),
]
# Frequent hits, to show the cost per match: what a detector of a common thing costs.
DENSE_REGEXES = [
    (r"\b(?:True|False|None)\b", True),
    (r"\b__\w+__\b", True),
    (r"\b[A-Z]{2,}_[A-Z_]+\b", True),
    (r"\b\d+\b", True),
]


def _words(text: str) -> list[str]:
    return text.split()


ELEMENTS = _words(
    """hydrogen helium lithium beryllium boron carbon nitrogen oxygen fluorine neon sodium
magnesium aluminium silicon phosphorus sulfur chlorine argon potassium calcium scandium titanium
vanadium chromium manganese iron cobalt nickel copper zinc gallium germanium arsenic selenium
bromine krypton rubidium strontium yttrium zirconium niobium molybdenum technetium ruthenium
rhodium palladium silver cadmium indium tin antimony tellurium iodine xenon caesium barium
lanthanum cerium praseodymium neodymium promethium samarium europium gadolinium terbium
dysprosium holmium erbium thulium ytterbium lutetium hafnium tantalum tungsten rhenium osmium
iridium platinum gold mercury thallium lead bismuth polonium astatine radon francium radium
actinium thorium protactinium uranium neptunium plutonium americium curium berkelium
californium einsteinium fermium mendelevium nobelium lawrencium"""
)
COUNTRIES = _words(
    """Afghanistan Albania Algeria Argentina Armenia Australia Austria Bangladesh Belgium
Bolivia Brazil Bulgaria Cambodia Cameroon Canada Chile China Colombia Croatia Cuba Denmark Egypt
Ethiopia Finland France Germany Ghana Greece Hungary Iceland India Indonesia Iran Iraq Ireland
Israel Italy Jamaica Japan Kenya Lebanon Malaysia Mexico Morocco Nepal Netherlands Nigeria Norway
Pakistan Peru Philippines Poland Portugal Romania Russia Senegal Serbia Singapore Spain Sweden
Switzerland Tanzania Thailand Tunisia Turkey Uganda Ukraine Uruguay Venezuela Vietnam Zambia"""
)
CITIES = _words(
    """Amsterdam Athens Bangkok Barcelona Beijing Berlin Bogota Brussels Budapest Cairo
Chicago Copenhagen Delhi Dhaka Dublin Edinburgh Florence Geneva Hamburg Hanoi Helsinki Istanbul
Jakarta Johannesburg Karachi Kyoto Lagos Lima Lisbon Liverpool Madrid Manila Marseille Melbourne
Milan Montreal Moscow Mumbai Munich Nairobi Naples Osaka Oslo Prague Quito Rome Santiago Seoul
Shanghai Stockholm Sydney Taipei Tehran Tokyo Toronto Vancouver Venice Vienna Warsaw Zurich"""
)
MATH_TERMS = _words(
    """eigenvalue eigenvector homomorphism isomorphism manifold tensor integral derivative
differential polynomial logarithm hypotenuse parabola hyperbola asymptote determinant matrix
theorem lemma corollary conjecture factorial permutation combination probability variance
quadratic cubic binomial coefficient denominator numerator fraction decimal integer prime
modulus congruence divisor multiple quotient remainder exponent radius diameter circumference
perimeter trigonometry sine cosine tangent vector scalar topology geometry algebra calculus"""
)
SCIENTISTS = _words(
    """Newton Einstein Darwin Curie Faraday Maxwell Galileo Kepler Copernicus Pasteur
Mendel Bohr Heisenberg Schrodinger Planck Feynman Dirac Fermi Hawking Turing Lovelace Babbage
Shannon Hopper Noether Gauss Euler Riemann Hilbert Ramanujan Fibonacci Pythagoras Archimedes
Euclid Lavoisier Mendeleev Tesla Edison Hubble Sagan Goodall Franklin Lamarck Linnaeus Hooke
Boyle Kelvin Joule Ohm Volta Ampere Hertz Doppler Rutherford Thomson Chadwick"""
)


def keyword_sets(paragraphs: list[str]) -> tuple[list[tuple[list[str], bool]], ...]:
    """Ten (keywords, case_sensitive) sets of rare-skill vocabularies, and ten dense ones.

    The rare sets are what a skill's keyword detector looks like: names, elements,
    places, terms, rare words and phrases of the corpus. The dense sets are the
    corpus's own common words: every document matches them many times.
    """
    words = Counter(w.strip(".,:;()[]'\"`") for p in paragraphs for w in p.split())
    ranked = [w for w, _ in words.most_common() if w.isalpha() and len(w) > 2]
    lower = [w for w in ranked if w.islower()]
    pairs = Counter(
        " ".join(pair).lower()
        for p in paragraphs
        for pair in zip(p.split(), p.split()[1:], strict=False)
        if all(w.isalpha() for w in pair)
    )
    rare_pairs = sorted(p for p, n in pairs.items() if n == 1)
    rare = [
        (FULL_NAMES, False),
        (lower[6000:8000], False),
        (random.Random(0).sample(rare_pairs, 1000), False),
        (list(WORDS), False),
        (ELEMENTS, False),
        (COUNTRIES, True),
        (CITIES, True),
        (MATH_TERMS, False),
        (SCIENTISTS, True),
        (["UTF-8", "ASCII", "POSIX", "kilobyte", "megabyte", "IEEE 754", "NaN", "Latin-1"], False),
    ]
    dense = [
        (lower[:50], False),
        (lower[50:500], False),
        (lower[500:2000], False),
        (lower[2000:4000], False),
        ([p for p, _ in pairs.most_common(1000)], False),
        (sorted(sys.stdlib_module_names), True),
        ([w for w in ranked if w[0].isupper() and w[1:].islower()][:300], True),
        ([n for n in dir(builtins) if not n.startswith("_")], True),
        (list(keyword.kwlist), True),
        (FULL_NAMES, False),
    ]
    return rare, dense


def _specs(detectors: list[dict]) -> list[SkillSpec]:
    return [
        SkillSpec(
            id=f"s{i}",
            name=f"s{i}",
            detector={k: v for k, v in d.items() if k != "generator"},
            generator=d.get("generator"),
        )
        for i, d in enumerate(detectors)
    ]


def skill_sets(paragraphs: list[str]) -> dict[str, list[SkillSpec]]:
    def regex(pairs):
        return [{"kind": "regex", "pattern": p, "case_sensitive": c} for p, c in pairs]

    def keywords(sets):
        return [{"kind": "keywords", "keywords": k, "case_sensitive": c} for k, c in sets]

    builtin = [
        {"kind": "builtin", "generator": {"family": f, "params": p}} for f, p in BUILTIN_GENERATORS
    ]
    rare, dense = keyword_sets(paragraphs)
    regexes = builtin + regex(USER_REGEXES)
    dense_regexes = builtin + regex(USER_REGEXES[: 30 - len(DENSE_REGEXES)] + DENSE_REGEXES)
    return {
        "1 skill": _specs(regexes[:1]),
        "10 skills": _specs(regexes[:4] + regexes[10:14] + keywords(rare[:2])),
        "50 skills": _specs(regexes + keywords(rare)),
        "50 skills, dense hits": _specs(dense_regexes + keywords(dense)),
    }
