"""preview: what the REST preview endpoint shows for one skill and one text."""

from curation.skills import SkillSpec, preview
from curation.skills.preview import MAX_PREVIEW_MATCHES
from curation.skills.probes import probe_instances, sample_instances


def test_preview_of_a_builtin_skill():
    spec = SkillSpec.model_validate(
        {"id": "cmp", "name": "cmp", "detector": {"kind": "builtin"},
         "generator": {"family": "number_comparison"}}
    )  # fmt: skip
    held_out, train = probe_instances(spec, 1)[0], sample_instances(spec, 1)[0]
    text = f"a {held_out.text} b {train.text}"
    result = preview(spec, text, samples=3)
    first, second = result["matches"]
    assert (first["text"], first["prompt"], first["answer"], first["probe"]) == (
        held_out.text, held_out.prompt, held_out.answer, True
    )  # fmt: skip
    assert (first["start"], first["end"]) == (2, 2 + len(held_out.text))
    assert second["probe"] is False
    assert len(result["instances"]) == len(result["probe_instances"]) == 3
    assert result == preview(spec, text, samples=3)  # deterministic


def test_preview_without_generator():
    spec = SkillSpec(id="k", name="k", detector={"kind": "keywords", "keywords": ["Ada"]})
    result = preview(spec, "ada, Ada and adage")
    assert [m["text"] for m in result["matches"]] == ["ada", "Ada"]
    assert "prompt" not in result["matches"][0]
    assert result["matches_truncated"] is False
    assert result["instances"] == result["probe_instances"] == []


def test_preview_lists_the_first_matches_and_says_when_more_may_follow():
    spec = SkillSpec(id="x", name="x", detector={"kind": "regex", "pattern": "x"})
    assert preview(spec, "x " * MAX_PREVIEW_MATCHES)["matches_truncated"] is False
    result = preview(spec, "x " * 10_000)
    assert [m["start"] for m in result["matches"]] == list(range(0, 2 * MAX_PREVIEW_MATCHES, 2))
    assert result["matches_truncated"] is True
