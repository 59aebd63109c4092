import ast
from pathlib import Path

import curation
from curation.text import byte_len, char_to_byte_offsets


def test_byte_offsets_of_non_ascii_text():
    text = "é XX ü XX"
    assert char_to_byte_offsets(text, [2, 4, 7, 9]) == {2: 3, 4: 5, 7: 9, 9: 11}
    assert char_to_byte_offsets("a XX", [2]) == {2: 2}


def test_a_lone_surrogate_has_a_byte_length():
    assert byte_len("é") == 2 and byte_len("a\ud800b") == 5


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return names | {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}


def test_the_byte_helpers_sit_below_the_pipeline_steps():
    """text.py imports nothing of curation; sources/ and mixture/ never import a pipeline step
    (except mixture/build.py, which assembles the build's pipeline from them)."""
    root = Path(curation.__file__).parent
    assert not {m for m in imported_modules(root / "text.py") if m.startswith("curation")}
    below = [*(root / "sources").glob("*.py"), *(root / "mixture").glob("*.py")]
    upward = {
        f"{path.parent.name}/{path.name}"
        for path in below
        if path.name != "build.py"
        and any(m.startswith("curation.steps") for m in imported_modules(path))
    }
    assert not upward
