"""The README and docs/ a newcomer reads: every relative link resolves, anchors included; the README stays short."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # a web address: not reachable from here
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target} does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{page.name}: {target} names no heading of {linked.name}"


def test_the_readme_fits_on_a_few_screens():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) <= 12 * 1024
    assert not re.search(r"\b(issue|session|seed 00\d)\b", readme, flags=re.I)


def test_the_extending_guide_shows_its_package_and_a_sweep_file_that_loads(monkeypatch):
    """docs/extending.md quotes docs/extending/mypkg verbatim, and its sweep file is one grokjax accepts."""
    from grokjax.config.sweep_file import from_dict
    from grokjax.engine import runs_table

    guide = (ROOT / "docs" / "extending.md").read_text(encoding="utf-8")
    blocks = dict(re.findall(r"`mypkg/(\w+\.py)`:\n\n```python\n(.*?)```", guide, flags=re.S))
    assert set(blocks) == {"tasks.py", "models.py"}
    for name, code in blocks.items():
        assert code == (ROOT / "docs" / "extending" / "mypkg" / name).read_text(encoding="utf-8")
    import tomllib

    toml = re.search(r"```toml\n(.*?)```", guide, flags=re.S).group(1)
    monkeypatch.syspath_prepend(str(ROOT / "docs" / "extending"))
    runs = runs_table.expand(from_dict(tomllib.loads(toml), "extending.md"))
    assert len(runs) == 2 * 7 * 2 and set(runs.embed) == {8, 16} and set(runs.model) == {"mypkg.models:EmbedMLP"}
