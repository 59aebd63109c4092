"""The raw-line factor screen is exact: seeded random patterns, texts and JSON spellings.

Three levels, each against the reference (plain decode + the exact matcher):
factors (every RE2 match contains one), the screen (a line it rules out has no
match in its decoded text, however the JSON escapes it), and whole scans (the
report with the screen equals the report without any prefilter, in every format).
"""

from __future__ import annotations

import gzip
import json
import random

import pytest
import re2

from curation.corpus import CorpusSource
from curation.scan import run_scan
from curation.skills.factors import Factor, re2_case_orbit, regex_factors
from curation.skills.matcher import SkillMatcher, set_patterns
from curation.skills.regex import PatternError, compile_pattern, effective_pattern
from curation.skills.screen import FactorScreen
from curation.skills.spec import SkillSpec
from curation.sources.reader import SCREEN_PROBE_LINES, SKIPPED, CorpusReader
from curation.steps.tagger import SkillTagger

KELVIN, LONG_S = "\u212a", "\u017f"
ALPHABET = 'abkKsSé/"\\\n -:' + KELVIN + LONG_S + "É€😀"


def random_pattern(rng: random.Random, depth: int = 0) -> str:
    """A random pattern in the RE2 syntax the detectors accept."""
    parts = []
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        if roll < 0.45 or depth > 2:
            atom = re2.escape(rng.choice(ALPHABET))
        elif roll < 0.55:
            atom = rng.choice(["[ab]", "[a-c]", "[kK]", "[é/]", r"\d", ".", r"\w", r"[^a]"])
        elif roll < 0.7:
            inner = "|".join(random_pattern(rng, depth + 1) for _ in range(rng.randint(1, 3)))
            atom = rng.choice(["(?:", "(?i:", "(", "(?-i:"]) + inner + ")"
        elif roll < 0.8:
            atom = rng.choice([r"\b", "^", "$", r"\B"])
        else:
            atom = re2.escape("".join(rng.choice(ALPHABET) for _ in range(rng.randint(2, 5))))
        if rng.random() < 0.3:
            atom += rng.choice(["?", "*", "+", "{2}", "{1,3}", "+?", "{0,2}"])
        parts.append(atom)
    return "".join(parts)


def random_text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(ALPHABET + "abcks") for _ in range(n))


def contains_factor(text: str, factors: frozenset[Factor]) -> bool:
    return any(
        all(text[i + j] in position for j, position in enumerate(factor))
        for factor in factors
        for i in range(len(text) - len(factor) + 1)
    )


def test_every_re2_match_contains_a_factor():
    rng = random.Random(18)
    analysed = checked = 0
    for _ in range(600):
        pattern, case_sensitive = random_pattern(rng), rng.random() < 0.5
        try:
            compile_pattern(pattern, case_sensitive)
        except PatternError:
            continue
        factors = regex_factors(pattern, case_sensitive)
        if factors is None:
            continue
        analysed += 1
        regexp = re2.compile(effective_pattern(pattern, case_sensitive))
        for _ in range(5):
            text = random_text(rng, 40)
            for match in regexp.finditer(text):
                checked += 1
                assert contains_factor(match.group(0), factors), (pattern, case_sensitive, text)
    assert analysed > 200 and checked > 200  # the test did look at something


@pytest.mark.parametrize(
    "pattern",
    [r"[[:alpha:]]+x", r"ab{,3}c", r"\pL+x", r"\x{263a}x", r"\Qa.b\E", r"ab\z", r"(?U)a+b", r"\W+"],
)
def test_what_python_reads_otherwise_or_has_no_literal_gets_no_factors(pattern):
    compile_pattern(pattern)  # all valid RE2
    assert regex_factors(pattern) is None


def test_a_factor_spans_the_edges_of_groups_and_repeats():
    digit, nonzero = frozenset("0123456789"), frozenset("123456789")
    # `\d{3,4}` ends with three digits, the group `b` begins with [1-9]\d{3}: "+" joins them.
    (factor,) = regex_factors(r"\b(?P<a>[1-9]\d{3,4})\+(?P<b>[1-9]\d{3,4})=(?P<c>\d+)\b")
    assert factor == (digit, digit, digit, frozenset("+"), nonzero, digit, digit, digit)
    # An optional group that may be absent: the digit before it, or its own last digit,
    # ends what precedes the unit either way.
    unit = (frozenset("k"), frozenset("gm"))  # Python's parser makes km|kg into k[gm]
    assert regex_factors(r"\d+(?:\.\d+)? ?(?:km|kg)\b") == {
        (digit, *unit),
        (digit, frozenset(" "), *unit),
    }


def test_case_orbits_come_from_re2():
    assert re2_case_orbit("k") == {"k", "K", KELVIN}
    assert re2_case_orbit("s") == {"s", "S", LONG_S}
    assert regex_factors("kit", case_sensitive=False) == {
        (frozenset("kK" + KELVIN), frozenset("iI"), frozenset("tT"))
    }


# ---------------------------------------------------------------- the screen on JSON lines

SKILLS = [
    {"id": "rfc", "detector": {"kind": "regex", "pattern": r"\bRFC-\d{3}\b"}},
    {"id": "path", "detector": {"kind": "regex", "pattern": r"/usr/(?:bin|lib)/\w+"}},
    {"id": "quote", "detector": {"kind": "regex", "pattern": r"say \"hi\"\s+\d"}},
    {"id": "slash", "detector": {"kind": "regex", "pattern": r"a\\b\\c"}},
    {"id": "nl", "detector": {"kind": "regex", "pattern": r"end\nstart"}},
    {"id": "tab", "detector": {"kind": "regex", "pattern": "x\ty[0-9]"}},
    {
        "id": "kelvin",
        "detector": {"kind": "regex", "pattern": r"\d+ kelvins?", "case_sensitive": False},
    },
    {"id": "café", "detector": {"kind": "regex", "pattern": r"café (?:au lait|noir)"}},
    {"id": "emoji", "detector": {"kind": "regex", "pattern": "go 😀+"}},
    {"id": "fffd", "detector": {"kind": "regex", "pattern": "x\ufffdy"}},
    {
        "id": "names",
        "detector": {"kind": "keywords", "keywords": ["Straße", "Ægir", "Σίσυφος", "nit", "OK"]},
    },
    {
        "id": "exact",
        "detector": {
            "kind": "keywords",
            "keywords": ["C++", "mass/energy", 'the "x"'],
            "case_sensitive": True,
        },
    },
    {
        "id": "sk",
        "detector": {"kind": "keywords", "keywords": ["ask", "kiss"], "word_boundaries": False},
    },
]
SPECS = [SkillSpec.model_validate({"name": s["id"], **s}) for s in SKILLS]
INSTANCES = [
    "RFC-123", "/usr/bin/env", "/usr/lib/x_1", 'say "hi"  7', "a\\b\\c", "end\nstart", "x\ty4",
    "12 KELVINS", "3 " + KELVIN + "elvin", "café au lait", "CAFÉ NOIR", "go 😀😀", "x\ufffdy",
    "STRASSE", "strasse", "Straße", "STRAßE", "ægir", "ΣΊΣΥΦΟΣ", "σίσυφος", "C++", "c++",
    "mass/energy", 'the "x"', "a" + LONG_S + "k", "KI" + LONG_S + "S",
    "\nnit", "\\nit", "\u00a0nit,", "énit", "\tNIT\n", "\"ok\"", "o" + KELVIN, "\x01OK",
]  # fmt: skip
FILLER = ["lorem ipsum ", "naïve ", "日本語 ", "\\", "/", '"', "\n", "\t", "\x01", "RFC-", "café "]


CLEAN = ["lorem ipsum ", "naïve ", "日本語 ", "café ", "RFC-1 "]


def adversarial_text(rng: random.Random, long: bool = False) -> str:
    pieces = []
    filler = FILLER if rng.random() < 0.6 else CLEAN  # some lines without risky characters
    for _ in range(rng.randint(1, 400 if long else 12)):
        if rng.random() < 0.25:
            instance = rng.choice(INSTANCES)
            if rng.random() < 0.3:  # break it somewhere: a near miss
                cut = rng.randrange(len(instance))
                instance = instance[:cut] + rng.choice(" Z\n") + instance[cut + 1 :]
            pieces.append(instance)
        else:
            pieces.append(rng.choice(filler))
    if rng.random() < 0.05:
        pieces.append("\ud800")  # a lone surrogate: JSON allows it
    return "".join(pieces)


def json_string(text: str, rng: random.Random, rate: float = 0.15) -> str:
    """`text` as a JSON string, each character spelt at random in one of its legal ways
    (`rate`: the share of characters written as \\uXXXX where they need not be)."""
    out = ['"']
    simple = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
    simple["\r"] = "\\r"
    for char in text:
        code = ord(char)
        roll = rng.random()
        if char == "/" and roll < 0.5:
            out.append("\\/")
        elif char in simple and roll < 0.7:
            out.append(simple[char])
        elif char in simple or code < 0x20 or 0xD800 <= code < 0xE000 or roll < rate:
            units = [code] if code <= 0xFFFF else [0xD800 + ((code - 0x10000) >> 10),
                                                   0xDC00 + ((code - 0x10000) & 0x3FF)]  # fmt: skip
            for unit in units:
                digits = f"{unit:04x}"
                out.append("\\u" + (digits.upper() if rng.random() < 0.5 else digits))
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def json_line(text: str, rng: random.Random, index: int) -> str:
    rate = rng.choice([0.0, 0.0, 0.15])
    fields = [f'"text": {json_string(text, rng, rate)}', f'"id": "d{index}"']
    if rng.random() < 0.3:
        fields.append(f'"meta": {json_string(random_text(rng, 5), rng, rate)}')
    rng.shuffle(fields)
    return "{" + ", ".join(fields) + "}"


def test_a_line_the_screen_rules_out_has_no_match():
    rng = random.Random(7)
    matcher = SkillMatcher(SPECS)
    screen = matcher.screen
    assert isinstance(screen, FactorScreen)
    ruled_out = matched = 0
    for index in range(3000):
        line = json_line(adversarial_text(rng, long=index % 500 == 0), rng, index)
        text = json.loads(line)["text"]
        found = matcher.find(text)
        matched += bool(found)
        if matcher.may_match_line(line.encode()) is False:  # None: no screen, passes
            ruled_out += 1
            assert not found, (line, found)
        if "\ud800" not in text and not matcher.may_match(text.encode()):  # tables: on the text
            assert not found, (text, found)
    assert ruled_out > 150 and matched > 1000  # both kinds of line were seen


def test_a_skill_without_factors_makes_every_line_a_candidate():
    blanks = {"id": "blanks", "name": "b", "detector": {"kind": "regex", "pattern": r"\W+"}}
    specs = [*SPECS, SkillSpec.model_validate(blanks)]
    matcher = SkillMatcher(specs)
    assert matcher.screen is None
    assert matcher.may_match_line(b'{"text": "nothing"}') is None  # no screen: every line passes
    # The answer is cached too: the next matcher of these skills looks for no factors.
    again = SkillMatcher(specs)
    again._screen_factors = lambda: pytest.fail("factors searched again")  # type: ignore[method-assign]
    assert again.screen is None


# ---------------------------------------------------------------- whole scans, every format


class TaggerWithoutPrefilter(SkillTagger):
    may_match = None  # the reference path: every document is built and matched


def write_corpus(root, fmt: str, lines: list[str]) -> CorpusSource:
    folder = root / fmt.replace(".", "_")
    folder.mkdir()
    halves = [lines[: len(lines) // 2], lines[len(lines) // 2 :]]
    if fmt in ("jsonl", "jsonl.gz"):
        for i, half in enumerate(halves):
            data = "".join(line + "\n" for line in half).encode()
            path = folder / f"part-{i}.{fmt}"
            path.write_bytes(gzip.compress(data, mtime=0) if fmt == "jsonl.gz" else data)
        return CorpusSource(f"{folder}/*.{fmt}", fmt, id_key="id")
    rows = [json.loads(line) for line in lines]
    rows = [r for r in rows if "\ud800" not in r["text"]]  # arrow stores UTF-8 only
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        for i, half in enumerate([rows[: len(rows) // 2], rows[len(rows) // 2 :]]):
            table = pa.table({"id": [r["id"] for r in half], "text": [r["text"] for r in half]})
            pq.write_table(table, folder / f"part-{i}.parquet", row_group_size=50)
        return CorpusSource(f"{folder}/*.parquet", fmt, id_key="id")
    import datasets

    datasets.disable_progress_bars()
    table = {"id": [r["id"] for r in rows], "text": [r["text"] for r in rows]}
    datasets.Dataset.from_dict(table).save_to_disk(str(folder / "hf"), num_shards=2)
    return CorpusSource(str(folder / "hf"), fmt, id_key="id")


@pytest.fixture(scope="module")
def adversarial(tmp_path_factory):
    root = tmp_path_factory.mktemp("adversarial")
    rng = random.Random(11)
    lines = [json_line(adversarial_text(rng, i == 7), rng, i) for i in range(400)]
    lines[30] = json_line("no skill at all, nothing to see", rng, 30)
    return root, lines


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz", "parquet", "hf_disk"])
def test_scans_with_the_screen_equal_scans_without(adversarial, tmp_path, fmt):
    root, lines = adversarial
    source = write_corpus(tmp_path, fmt, lines)
    reports = []
    for name, tagger in (("on", SkillTagger), ("off", TaggerWithoutPrefilter)):
        reports.append(
            run_scan(
                source,
                SPECS,
                str(tmp_path / name),
                allowed_roots=[str(tmp_path)],
                tagger=tagger(SPECS),
                batch_tokens=4096,
                plots=False,
                tasks=2,
            )
        )
    on, off = (json.dumps(r, sort_keys=True) for r in reports)
    assert on == off
    assert sum(s["instances"] for s in reports[0]["skills"].values()) > 100


def test_the_reader_counts_screened_lines_without_building_them(adversarial, tmp_path):
    _root, lines = adversarial
    path = tmp_path / "a.jsonl"
    path.write_text("".join(line + "\n" for line in lines[25:40]))
    tagger = SkillTagger(SPECS)
    reader = CorpusReader(
        [str(path)], "jsonl", prefilter=tagger.may_match, line_screen=tagger.may_match_line
    )
    out = list(reader())
    skipped = sum(d.metadata[SKIPPED]["docs"] for d in out if SKIPPED in d.metadata)
    built = [d for d in out if SKIPPED not in d.metadata]
    assert skipped + len(built) == 15 and skipped >= 1
    assert all(tagger.matcher.find(d.text) for d in built)


def test_a_screen_loaded_from_the_cache_says_the_same(tmp_path, monkeypatch):
    monkeypatch.delenv("SKILLMIX_SCREEN_CACHE")  # the default place, under XDG_CACHE_HOME
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    rng = random.Random(3)
    lines = [json_line(adversarial_text(rng), rng, i).encode() for i in range(300)]
    built = SkillMatcher(SPECS)
    first = [built.may_match_line(line) for line in lines]
    cached = sorted((tmp_path / "skillmix" / "screens").iterdir())
    assert sorted(p.suffix for p in cached) == [".hsdb", ".json", ".json"]
    assert sum(p.name.startswith("set-") for p in cached) == 1  # the Set's patterns
    loaded = SkillMatcher(SPECS)  # patterns and compiled database from the cache
    assert [loaded.may_match_line(line) for line in lines] == first
    assert 0 < sum(first) < len(lines)


def test_the_sets_patterns_loaded_from_the_cache_are_those_built(tmp_path, monkeypatch):
    detectors = [spec.concrete_detector() for spec in SPECS]
    monkeypatch.setenv("SKILLMIX_SCREEN_CACHE", str(tmp_path / "a"))
    built = set_patterns(detectors, "digest")
    assert set_patterns(detectors, "digest") == built  # now from the cache
    (entry,) = (tmp_path / "a").iterdir()
    stored = json.loads(entry.read_text())
    entry.write_text(json.dumps({**stored, "patterns": ["changed"] + stored["patterns"][1:]}))
    assert set_patterns(detectors, "digest")[0] == "changed"  # it was read, not made again
    monkeypatch.setenv("SKILLMIX_SCREEN_CACHE", str(tmp_path / "b"))
    assert set_patterns(detectors, "digest") == built


def test_a_screen_that_passes_most_lines_is_turned_off(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps({"text": f"doc {i}"}) + "\n" for i in range(2500)))
    calls = []

    def screen(line: bytes) -> bool:
        calls.append(line)
        return True

    reader = CorpusReader([str(path)], "jsonl", prefilter=lambda data: True, line_screen=screen)
    assert sum(1 for _ in reader()) == 2500  # every document still comes through
    assert len(calls) == SCREEN_PROBE_LINES


def test_a_screen_that_says_it_is_off_is_not_asked_again(tmp_path):
    """None from the line screen (SkillMatcher's, settled off) ends the asking for the whole
    rank: a per-line call that only says "pass" cost ~5% of a rare-skill scan."""
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    for path in paths:
        path.write_text("".join(json.dumps({"text": f"doc {i}"}) + "\n" for i in range(50)))
    calls = []

    def screen(line: bytes) -> bool | None:
        calls.append(line)
        return False if len(calls) < 3 else None

    reader = CorpusReader(
        [str(p) for p in paths], "jsonl", prefilter=lambda data: True, line_screen=screen
    )
    out = list(reader())
    skipped = sum(d.metadata[SKIPPED]["docs"] for d in out if SKIPPED in d.metadata)
    built = [d for d in out if SKIPPED not in d.metadata]
    assert len(calls) == 3  # two lines ruled out, then None: never asked again
    assert skipped == 2 and len(built) == 98
