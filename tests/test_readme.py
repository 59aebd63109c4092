"""Every code block in README.md runs, in order, against an embedded service.

`yaml` blocks whose first line is `# <file>` are written to that file; `bash` and `python`
blocks run with SKILLMIX_BASE_URL and CORPUS_DIR set. The `sh` block (`make demo`,
`make test`) is CI's own entry point: .ci/run runs `make test`, and
tests/service/cli/test_cli.py runs the demo. `text` blocks are diagrams.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from curation.synthetic_corpus import Plant, generate_corpus
from service.cli.embedded import embedded_stack

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)


def blocks() -> list[tuple[str, str]]:
    return BLOCK.findall(README.read_text())


def test_readme_has_only_known_block_kinds() -> None:
    assert {kind for kind, _ in blocks()} <= {"sh", "text", "bash", "python", "yaml"}


def test_readme_code_blocks_run(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with embedded_stack(tmp_path / "data") as stack:
        corpus_dir = tmp_path / "data" / "corpora" / "web"
        generate_corpus(
            str(corpus_dir),
            n_docs=200,
            seed=0,
            format="jsonl.gz",
            plants=[Plant("c", ("cmp 12 57 : <", "cmp 80 31 : >"), every=7)],
        )
        environ = {
            **os.environ,
            "SKILLMIX_BASE_URL": stack.base_url,
            "CORPUS_DIR": str(corpus_dir),
            # as in an activated virtualenv: `skillmix` on the PATH
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        work = tmp_path / "work"
        work.mkdir()
        for kind, code in blocks():
            if kind == "yaml" and code.startswith("# "):
                (work / code.split("\n", 1)[0][2:].strip()).write_text(code)
        script = "\n".join(code for kind, code in blocks() if kind == "bash")
        # The bash blocks export the key they create; the python blocks run after them.
        script += '\necho "KEY=$SKILLMIX_API_KEY"\n'
        shell = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=work,
            env=environ,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert shell.returncode == 0, shell.stdout[-4000:] + shell.stderr[-4000:]
        key = shell.stdout.rsplit("KEY=", 1)[1].strip()
        for kind, code in blocks():
            if kind == "python":
                run = subprocess.run(
                    [sys.executable, "-c", code],
                    cwd=work,
                    timeout=300,
                    env={**environ, "SKILLMIX_API_KEY": key},
                    capture_output=True,
                    text=True,
                )
                assert run.returncode == 0, code + run.stdout + run.stderr
