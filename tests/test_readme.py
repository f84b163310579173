"""The README's Python API block runs as written, on a tiny synthetic CIFAR-10 source instead of the real one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.test_apply import _write_source

README = Path(__file__).resolve().parents[1] / "README.md"


def python_api_block() -> str:
    """The first ```python block of the README's "## Python API" section."""
    text = README.read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return code


def test_the_python_api_section_comes_before_the_command_line_one():
    text = README.read_text()
    assert text.index("\n## Python API\n") < text.index("\n## Apply a trick to a Learner\n")


def test_the_readmes_python_api_example_trains_a_plain_fastai_learner(tmp_path, monkeypatch):
    source = _write_source(tmp_path / "cifar_tiny", n_train=8, n_test=4)
    monkeypatch.setenv("TRICKS_DATA", str(source))
    monkeypatch.setenv("TRICKS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    from torch import nn

    from tricks.callbacks import ClipGradValue, ExpLRDecay

    scope: dict = {}
    exec(compile(python_api_block(), str(README), "exec"), scope)  # noqa: S102 - the README's own code
    learn = scope["learn"]
    assert len(learn.recorder.values) == 2  # learn.fit(2, ...) ran both epochs
    assert any(isinstance(m, nn.BatchNorm2d) for m in learn.model.modules())  # the transform acted
    assert {ExpLRDecay, ClipGradValue} <= {type(cb) for cb in learn.cbs}
    assert 0.0 <= float(learn.recorder.values[-1][-1]) <= 1.0
    assert len(scope["arrays"].x_train) == 80  # the synthetic source, not a download


@pytest.mark.parametrize("stale", ["a fifth"])
def test_the_command_lines_docstring_says_what_smoke_keeps(stale):
    import tricks.apply

    assert stale not in tricks.apply.__doc__ and "keeps a tenth" in tricks.apply.__doc__
