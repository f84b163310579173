"""What the README promises on its first screen, and that its links, commands and Python block hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.test_apply import _write_source

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FIRST_SCREEN = 60  # lines


def _section(title: str) -> str:
    text = README.read_text()
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def python_api_block() -> str:
    """The ```python block of the README's "## A callback in your own Learner" section."""
    (code,) = re.findall(r"```python\n(.*?)```", _section("A callback in your own Learner"), flags=re.S)
    return code


def test_the_readme_is_a_front_page_under_200_lines():
    assert len(README.read_text().splitlines()) < 200


def test_the_first_screen_says_what_it_is_how_to_install_use_a_callback_and_which_claims_hold():
    first = "\n".join(README.read_text().splitlines()[:FIRST_SCREEN])
    assert "fastai" in first.split("\n## ", 1)[0] and "claims" in first.split("\n## ", 1)[0]  # what it is
    assert "pip install -e '.[test,ray]'" in first and "torch" in first  # install, and the torch note
    assert "## A callback in your own Learner" in first and "```python" in first
    assert "## Which claims hold" in first and "<!-- answers:start -->" in first


def test_the_answer_block_holds_every_claim_with_its_words_source_and_verdicts():
    from claims.answers import END, START, all_claims

    text = README.read_text()
    block = text[text.index(START):text.index(END)]
    assert "| claim | source | what it says | published recipes (paper) | quick proxy (default) |" in block
    rows = {line.split("|")[1].strip(): line for line in block.splitlines() if line.startswith("| C") or
            line.startswith("| X")}
    for claim in all_claims():
        assert claim.id in rows, claim.id
        assert claim.quote[:40].rstrip() in rows[claim.id] or claim.quote[:40].rstrip("… ") in rows[claim.id]


def test_every_source_named_in_the_answer_table_is_in_the_sources_list_with_author_year_and_where():
    from claims.answers import DOCS

    text = README.read_text()
    sources = text.split("\n### Sources\n", 1)[1].split("\n## ", 1)[0]
    for doc, short in DOCS.items():
        (row,) = [ln for ln in sources.splitlines() if f"`{short}` ({doc})" in ln]
        title, who, where = (cell.strip() for cell in row.split("|")[2:5])
        assert title and re.search(r"\b(19|20)\d\d\b", who), row  # a title, an author and a year
        assert "github.com" in where or "jovian.ai" in where, row


def test_every_docs_page_exists_and_is_linked_from_the_readme_and_no_user_doc_cites_an_issue():
    text = README.read_text()
    linked = set(re.findall(r"\]\((docs/[\w/.-]+\.md)\)", text))
    pages = {str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")}
    assert linked and linked <= pages and pages <= linked
    for path in [README, *sorted((ROOT / "docs").rglob("*.md"))]:
        assert not re.search(r"\bissues? \d+", path.read_text(), flags=re.I), path
        assert "../shared/spec" not in path.read_text(), path  # a file outside the repository


def test_ci_runs_the_install_and_the_test_command_the_readme_names():
    ci = (ROOT / ".ci" / "run").read_text()
    commands = _section("Commands")
    assert "nox -s tests" in commands and re.search(r"^nox -s tests$", ci, flags=re.M)
    assert "pip install -e '.[test,ray]'" in README.read_text() and "pip install -q -e '.[test,ray]'" in ci


def test_the_distribution_name_is_the_readmes_and_not_the_import_packages():
    (name,) = re.findall(r'^name = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), flags=re.M)
    assert name not in ("tricks", "claims")  # both are other projects on the package index
    assert name in README.read_text().splitlines()[0] and f"distribution is {name}" in README.read_text()


def test_the_generated_blocks_live_in_docs_where_their_commands_write():
    from claims import reproduce

    assert reproduce.README == "docs/reproduction.md"
    assert "<!-- reproduce:start -->" in (ROOT / reproduce.README).read_text()
    assert "<!-- claims-summary:start -->" in (ROOT / "docs" / "results.md").read_text()
    nox = (ROOT / "noxfile.py").read_text()
    assert '"--readme", "docs/results.md"' in nox and '"--readme", "docs/reproduction.md"' in nox
    from claims import standing

    assert standing.START in (ROOT / "docs" / "campaign.md").read_text()
    assert '"claims.standing", "--doc", "docs/campaign.md"' in nox


def test_the_readmes_python_example_trains_a_plain_fastai_learner(tmp_path, monkeypatch):
    source = _write_source(tmp_path / "cifar_tiny", n_train=8, n_test=4)
    monkeypatch.setenv("TRICKS_DATA", str(source))
    monkeypatch.setenv("TRICKS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    from torch import nn

    from tricks.callbacks import BnFreeze, ExpLRDecay

    scope: dict = {}
    exec(compile(python_api_block(), str(README), "exec"), scope)  # noqa: S102 - the README's own code
    learn = scope["learn"]
    assert len(learn.recorder.values) == 2  # learn.fit(2, ...) ran both epochs
    assert any(isinstance(m, nn.BatchNorm2d) for m in learn.model.modules())  # the transform acted
    assert {ExpLRDecay, BnFreeze} <= {type(cb) for cb in learn.cbs}
    assert 0.0 <= float(learn.recorder.values[-1][-1]) <= 1.0
    assert len(scope["arrays"].x_train) == 80  # the synthetic source, not a download


@pytest.mark.parametrize("stale", ["a fifth"])
def test_the_command_lines_docstring_says_what_smoke_keeps(stale):
    import tricks.apply

    assert stale not in tricks.apply.__doc__ and "keeps a tenth" in tricks.apply.__doc__
