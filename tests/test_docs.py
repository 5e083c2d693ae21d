"""Every relative link in every Markdown file of the repository resolves inside it.

A link to a file must name a file or folder of the repository (not something beside
it, like a design brief the user does not have); a link to ``#anchor`` must name a
heading of the file it points to, as GitHub makes anchors of headings.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", ".venv", "venv", "build", "dist", "node_modules", ".pytest_cache", ".mypy_cache"}
INLINE_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
HTML_LINK = re.compile(r"""<(?:a|img)\s[^>]*(?:href|src)=["']([^"']+)["']""", re.IGNORECASE)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, ...


def markdown_files() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.md") if not SKIP_DIRS & set(p.relative_to(ROOT).parts[:-1])
                  and not any(part.endswith(".egg-info") for part in p.relative_to(ROOT).parts))


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets are not links."""
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)


def links(text: str) -> list[str]:
    body = prose(text)
    return INLINE_LINK.findall(body) + REFERENCE_LINK.findall(body) + HTML_LINK.findall(body)


def github_anchor(heading: str) -> str:
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip()).lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    for line in prose(path.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = github_anchor(match.group(1))
            n = counts.get(slug, 0)
            counts[slug] = n + 1
            found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def named_documents(text: str) -> list[str]:
    """Markdown documents named in code spans (`` `DESIGN.md` ``): they must exist too."""
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.findall(r"`([\w./-]+\.md)`", text)


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    problems = []
    names = {p.name for p in root.rglob("*.md")}
    for name in named_documents(path.read_text(encoding="utf-8")):
        if not ((path.parent / name).exists() or (root / name).exists() or ("/" not in name and name in names)):
            problems.append(f"`{name}` (named, but not in the repository)")
    for target in links(path.read_text(encoding="utf-8")):
        if EXTERNAL.match(target):
            continue
        file_part, _, fragment = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        try:
            resolved.relative_to(root)
        except ValueError:
            problems.append(f"{target} (outside the repository)")
            continue
        if not resolved.exists():
            problems.append(f"{target} (no such file)")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            problems.append(f"{target} (no heading #{fragment})")
    return problems


def test_the_repository_has_markdown_files_with_links():
    files = markdown_files()
    assert ROOT / "README.md" in files and ROOT / "SECURITY.md" in files
    assert sum(len(links(p.read_text(encoding="utf-8"))) for p in files) > 10


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves_inside_the_repository(path):
    assert broken_links(path) == []


def test_the_checker_catches_what_it_should(tmp_path):
    doc = tmp_path / "doc.md"
    (tmp_path / "real.md").write_text("# Real heading\n")
    doc.write_text(
        "# Title\n[ok](real.md#real-heading) [self](#title) [web](https://example.org/x)\n"
        "[gone](missing.md) [bad anchor](real.md#nope) [outside](../DESIGN.md)\n"
        "`[not a link](nowhere.md)`\n```\n[nor this](nowhere.md)\n```\nsee `DESIGN.md` and `real.md`\n"
    )
    assert broken_links(doc, root=tmp_path) == ["`DESIGN.md` (named, but not in the repository)",
                                                "missing.md (no such file)", "real.md#nope (no heading #nope)",
                                                "../DESIGN.md (outside the repository)"]
