"""The repository stands alone: no file points to a folder outside it.

Definitions, the interface and what we rely on about Stripe are written in docs/; code, tests and docs point
there. A reference to a contract folder beside the repository, or an absolute path of one machine, would send
a reader (or a test run on another machine) to something that is not there. Every file git tracks or would
track (untracked but not ignored) is read; .git, .venv and binary files are skipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"}

# Written so that this file does not match its own patterns.
FORBIDDEN = {
    "a path into a folder beside the repository": re.compile(r"\.\./shared"),
    "a reference to the contract documents": re.compile(r"shared/(?:METRICS|CLI|STYLE|ARCHITECTURE)\.md"),
    "a reference to the Stripe notes beside the repository": re.compile(r"shared/[s]tripe/"),
    "an absolute path of one machine": re.compile(r"(?<![\w.~-])/[w]ork/"),
}


def _git_files() -> list[Path] | None:
    """Tracked files plus untracked ones that are not ignored; None when git cannot tell."""
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        return None
    try:
        out = subprocess.run(
            [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return sorted({ROOT / name for name in out.decode("utf-8", "surrogateescape").split("\0") if name})


def _walked_files() -> list[Path]:
    """Without git: every file under the root, minus the same folders."""
    return sorted(
        p for p in ROOT.rglob("*") if p.is_file() and not SKIP_DIRS.intersection(p.relative_to(ROOT).parts)
    )


def _text_files() -> Iterator[tuple[Path, str]]:
    files = _git_files()
    for path in files if files is not None else _walked_files():
        if SKIP_DIRS.intersection(path.relative_to(ROOT).parts) or not path.is_file():
            continue  # a tracked file deleted in the working tree, or a folder git was told to keep
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary (images, databases)
        yield path, data.decode("utf-8", "replace")


def test_no_file_points_outside_the_repository() -> None:
    found = []
    for path, text in _text_files():
        for what, pattern in FORBIDDEN.items():
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{path.relative_to(ROOT)}:{line}: {what} ({match.group(0)!r})")
    assert not found, "point into docs/ or tests/fixtures/ instead:\n" + "\n".join(found)
