from pathlib import Path

import pytest

from bot.training import TrainingError, fingerprint


def project(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "config.yml").write_text("recipe: default.v1\n")
    (tmp_path / "domain.yml").write_text("version: '3.1'\n")
    (tmp_path / "data" / "nlu.yml").write_text("nlu: []\n")
    return tmp_path


def test_fingerprint_is_stable_and_follows_every_training_input(tmp_path):
    root = project(tmp_path)
    first = fingerprint(root)
    assert fingerprint(root) == first
    (root / "data" / "rules.yml").write_text("rules: []\n")
    second = fingerprint(root)
    assert second != first
    (root / "domain.yml").write_text("version: '3.1'\nintents: [greet]\n")
    assert fingerprint(root) not in (first, second)


def test_unrelated_files_do_not_retrain(tmp_path):
    root = project(tmp_path)
    before = fingerprint(root)
    (root / "README.md").write_text("docs")
    assert fingerprint(root) == before


def test_missing_input_is_reported(tmp_path):
    root = project(tmp_path)
    (root / "domain.yml").unlink()
    with pytest.raises(TrainingError, match="domain.yml"):
        fingerprint(root)
