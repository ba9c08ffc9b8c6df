"""The documentation site: it builds with ``mkdocs build --strict`` (a broken link, a page left out of the nav or a
bad setting fails), and ``make help`` lists every target the README names."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.helpers import ROOT


def test_the_docs_site_builds_strict(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pages = {p.relative_to(tmp_path / "site").parts[0] for p in (tmp_path / "site").rglob("index.html")}
    assert {p.stem for p in (ROOT / "docs").glob("*.md") if p.stem != "index"} <= pages


def test_make_help_lists_every_target_the_readme_names():
    proc = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    listed = set(re.findall(r"^  make (\S+)", proc.stdout, re.M))
    named = set(re.findall(r"\bmake ([a-z][a-z-]+)", (ROOT / "README.md").read_text()))
    assert proc.returncode == 0 and named <= listed, (named - listed, proc.stdout)
