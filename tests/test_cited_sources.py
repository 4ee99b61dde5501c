"""Comments cite the method by section of docs/method.md: the file is in the repository and every cited section
is one of its headings."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHOD = REPO / "docs/method.md"
CODE = ("model", "app", "training", "tests", "benchmarks")
HEADING = re.compile(r"^#+ (\d+(?:\.\d+)*)\.? ", re.MULTILINE)
SECTION = re.compile(r"§(\d+(?:\.\d+)*)")


def sources() -> list[Path]:
    return sorted(path for folder in CODE for path in (REPO / folder).rglob("*.py"))


def test_every_cited_section_of_docs_method_md_exists():
    sections = set(HEADING.findall(METHOD.read_text()))
    assert {"1.1", "2.2", "4.1"} <= sections
    cited, missing = 0, []
    for path in sources():
        text = path.read_text()
        if "docs/method.md" not in text:
            continue
        for line_number, line in enumerate(text.splitlines(), start=1):
            for section in SECTION.findall(line):
                cited += 1
                if section not in sections:
                    missing.append(f"{path.relative_to(REPO)}:{line_number}: §{section}")
    assert cited > 0 and missing == []


def test_method_md_is_only_cited_by_its_path():
    bare = [
        f"{path.relative_to(REPO)}:{n}"
        for path in sources()
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if re.search(r"(?<!docs/)method\.md", line)
    ]
    assert bare == []
