"""Every runnable snippet in README.md and docs/*.md runs as written, in the order written.

The convention the docs follow:

- a fence opened with ```` ```python ```` is a program: it runs in a fresh interpreter;
- a fence opened with ```` ```sh ```` is a shell session: each line runs in turn (``logq`` is
  the installed command), and must exit 0;
- any other fence (```` ``` ````, ```` ```text ````) is output or a listing and is not run.

All runnable blocks of one file share one fresh working directory, block after block, as a
reader who copies them top to bottom would; so a block may use the data an earlier block of
the same file wrote, and must also not fail because of it (creating a topic twice, say).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([a-z]*)[^\n]*\n(.*?)^```\s*$", re.M | re.S)
RUNNABLE = {"python", "sh"}


def blocks(path: Path) -> list[tuple[str, str, int]]:
    """(language, code, line number) of each runnable fenced block, in order."""
    text = path.read_text()
    out = []
    for m in FENCE.finditer(text):
        if m.group(1) in RUNNABLE:
            out.append((m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1))
    return out


def env() -> dict[str, str]:
    e = dict(os.environ)
    # the interpreter running the tests is the one logq is installed in: its bin holds `logq`
    e["PATH"] = os.path.dirname(sys.executable) + os.pathsep + e.get("PATH", "")
    e.pop("LOGQ_DATA", None)
    e["TZ"] = "UTC"
    return e


def run_block(lang: str, code: str, cwd: Path, where: str) -> None:
    if lang == "python":
        cmds = [[sys.executable, "-c", code]]
    else:
        lines = [ln for ln in code.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        cmds = [["bash", "-o", "pipefail", "-c", ln] for ln in lines]
    for cmd in cmds:
        res = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=120)
        shown = cmd[-1] if lang == "sh" else "the python block"
        assert res.returncode == 0, (
            f"{where}: {shown} exited {res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
        )
        assert "Traceback" not in res.stderr, f"{where}: {shown} printed a traceback\n{res.stderr[-2000:]}"


DOCS_WITH_BLOCKS = [p for p in DOCS if blocks(p)]


@pytest.mark.parametrize("doc", DOCS_WITH_BLOCKS, ids=[p.name for p in DOCS_WITH_BLOCKS])
def test_every_snippet_of_the_doc_runs_in_order(doc: Path, tmp_path: Path) -> None:
    for lang, code, line in blocks(doc):
        run_block(lang, code, tmp_path, f"{doc.relative_to(REPO)}:{line}")


def test_the_docs_have_runnable_snippets() -> None:
    # The test above would pass vacuously if the fences were renamed; the guide and the
    # README must keep their runnable quickstarts.
    names = {p.name for p in DOCS_WITH_BLOCKS}
    assert {"README.md", "guide.md"} <= names


PATH_REF = re.compile(r"\b(?:tests|logq|tools|benchmarks|docs)/[\w/]+\.(?:py|md)\b")


def test_every_file_the_docs_and_docstrings_name_exists() -> None:
    # Paths in prose rot when code moves; a reader following one must find the file.
    sources = DOCS + sorted(REPO.glob("logq/**/*.py")) + sorted(REPO.glob("tests/**/*.py"))
    sources += sorted(REPO.glob("tools/*.py")) + sorted(REPO.glob("benchmarks/*.py"))
    missing = []
    for src in sources:
        for m in PATH_REF.finditer(src.read_text()):
            if not (REPO / m.group(0)).exists():
                missing.append(f"{src.relative_to(REPO)}: {m.group(0)}")
    assert not missing, "files named but not there:\n" + "\n".join(sorted(set(missing)))
