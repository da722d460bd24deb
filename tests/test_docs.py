"""The example file and the README table are generated from the one declaration, and cannot drift."""

from __future__ import annotations

from conftest import ROOT
from devswitch.config import resolve
from devswitch.docs import readme_with_reference, render_example
from devswitch.settings import SETTINGS


def test_example_file_is_generated_from_the_settings():
    assert (ROOT / ".devswitchrc.example").read_text() == render_example(), \
        "run 'python -m devswitch.docs' to regenerate .devswitchrc.example"


def test_readme_reference_table_is_generated_from_the_settings():
    readme = (ROOT / "README.md").read_text()
    assert readme == readme_with_reference(readme), "run 'python -m devswitch.docs' to regenerate README.md"
    for setting in SETTINGS:
        assert f"`{setting.env}`" in readme


def test_example_file_is_valid_and_sets_every_default(tmp_path):
    cfg = resolve({"DEVSWITCHRC": str(ROOT / ".devswitchrc.example")}, tmp_path, tmp_path)
    for setting in SETTINGS:
        if setting.name == "backend":  # "auto" in the file: resolved to Keras' own choice, and says so
            assert cfg["backend"].source == "DEVSWITCHRC file: auto -> Keras"
            continue
        assert cfg[setting.name].source == "DEVSWITCHRC file", setting.name
        assert getattr(cfg, setting.name) == setting.default, setting.name
    assert set(cfg.profiles) == {"gpu", "cpu-bf16"}
