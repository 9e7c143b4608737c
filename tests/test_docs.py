"""Docs smoke test: every code block marked runnable in README.md and docs/*.md runs.

Convention: a fenced block whose fence line (```python or ```bash) directly follows the
line ``<!-- runnable -->`` is executed from the repository root. Python blocks run with
this interpreter in a subprocess; bash blocks run with ``bash -e`` and this
interpreter's directory first on PATH, so ``python`` is the project's Python. Only quick
commands are marked; the whole set should stay well under a minute on an idle machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- runnable -->"
TIMEOUT_S = 120
_FENCE = re.compile(r"^```(\w*)\s*$")


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def runnable_blocks(text: str) -> list[tuple[int, str, str]]:
    """(line number, language, code) of every block preceded by MARKER.

    Raises ValueError for a marker not directly followed by a ```python/```bash fence,
    or a marked block that is never closed.
    """
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        fence = _FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
        if fence is None or fence.group(1) not in ("python", "bash"):
            raise ValueError(f"line {i + 1}: {MARKER} must be followed by ```python or ```bash")
        body = []
        for j in range(i + 2, len(lines)):
            if lines[j].startswith("```"):
                break
            body.append(lines[j])
        else:
            raise ValueError(f"line {i + 2}: marked block is never closed")
        out.append((i + 2, fence.group(1), "\n".join(body) + "\n"))
    return out


def _cases() -> list:
    cases = []
    for path in doc_files():
        for lineno, lang, code in runnable_blocks(path.read_text(encoding="utf-8")):
            rel = path.relative_to(ROOT)
            cases.append(pytest.param(lang, code, id=f"{rel}:{lineno}"))
    return cases


def test_marker_parsing() -> None:
    text = "\n".join([
        "```python", "print('not marked')", "```",
        MARKER, "```bash", "echo hi", "```",
        MARKER, "```python", "x = 1", "", "print(x)", "```",
    ])
    blocks = runnable_blocks(text)
    assert [(lang, code) for _, lang, code in blocks] == [
        ("bash", "echo hi\n"), ("python", "x = 1\n\nprint(x)\n")]
    with pytest.raises(ValueError, match="must be followed"):
        runnable_blocks(MARKER + "\n```text\nx\n```")
    with pytest.raises(ValueError, match="never closed"):
        runnable_blocks(MARKER + "\n```bash\necho\n")


def test_docs_have_runnable_blocks() -> None:
    # README's example, the analyze command and a few docs commands at least
    assert len(_cases()) >= 4
    readme = [lang for _, lang, _ in runnable_blocks((ROOT / "README.md").read_text())]
    assert "python" in readme and "bash" in readme


@pytest.mark.parametrize(("lang", "code"), _cases())
def test_runnable_block(lang: str, code: str) -> None:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if lang == "python":
        cmd = [sys.executable, "-c", code]
    else:
        cmd = ["bash", "-e", "-c", code]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n--- code\n{code}--- stdout\n{proc.stdout[-3000:]}"
        f"--- stderr\n{proc.stderr[-3000:]}")
