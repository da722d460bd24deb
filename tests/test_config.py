"""Resolution: precedence, locations, profiles — pure, with fake homes and environments."""

from __future__ import annotations

from pathlib import Path

import pytest

from _devswitch.config import resolve
from _devswitch.settings import SETTINGS, Threads


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("user, proj, env, explicit, expected_value, expected_source", [
    pytest.param(None, None, {}, None, "auto", "default", id="default when nothing is set"),
    pytest.param("device: cpu\n", None, {}, None, "cpu", "user file", id="user file beats default"),
    pytest.param("device: cpu\n", "device: gpu\n", {}, None, "gpu", "project file",
                 id="project file beats user file"),
    pytest.param(None, "device: gpu\n", {"DEVSWITCH_FLAGS": "device=cpu"}, None, "cpu", "DEVSWITCH_FLAGS",
                 id="DEVSWITCH_FLAGS beats project file"),
    pytest.param(None, None, {"DEVSWITCH_FLAGS": "device=cpu", "DEVSWITCH_DEVICE": "gpu:0"}, None, "gpu:0",
                 "env var", id="DEVSWITCH_DEVICE beats DEVSWITCH_FLAGS"),
    pytest.param(None, "device: gpu\n", {"DEVSWITCH_DEVICE": "gpu:0"}, {"device": "cpu"}, "cpu", "explicit",
                 id="explicit argument beats everything"),
    pytest.param("device: cpu\n", None, {"DEVSWITCH_DEVICE": ""}, None, "cpu", "user file",
                 id="an empty variable counts as unset"),
])
def test_precedence(home, project, user, proj, env, explicit, expected_value, expected_source):
    if user:
        write(home / ".devswitchrc", user)
    if proj:
        write(project / ".devswitchrc", proj)
    cfg = resolve(env, home, project / "src", explicit)
    assert cfg.device == expected_value
    assert cfg["device"].source == expected_source


def test_every_value_knows_its_location(home, project):
    write(home / ".devswitchrc", "# my defaults\nprecision: bf16\n")
    rc = write(project / ".devswitchrc", "device: cpu\n\nxla:   true\n")
    cfg = resolve({"DEVSWITCH_FLAGS": "fallback=error", "DEVSWITCH_THREADS": "4:2"}, home, project / "src")
    assert cfg["precision"].location == f"{home / '.devswitchrc'}:2:12"
    assert cfg["device"].location == f"{rc}:1:9"
    assert cfg["xla"].location == f"{rc}:3:8" and cfg.xla is True
    assert cfg["fallback"].location == "DEVSWITCH_FLAGS (fallback)"
    assert cfg["threads"].location == "DEVSWITCH_THREADS" and cfg.threads == Threads(4, 2)
    assert cfg["report"].source == "default"
    assert cfg.files == (str(home / ".devswitchrc"), str(rc))


def test_precision_aliases_are_canonicalised(home, project):
    cfg = resolve({"DEVSWITCH_PRECISION": "mixed_bfloat16"}, home, project)
    assert cfg.precision == "bf16"
    assert resolve({"DEVSWITCH_PRECISION": "Float32"}, home, project).precision == "fp32"
    assert resolve({"DEVSWITCH_PRECISION": "mixed_float16"}, home, project).precision == "fp16"


def test_flags_parse_gpu_lists_and_several_keys(home, project):
    cfg = resolve({"DEVSWITCH_FLAGS": "device=gpu:0,1, precision=fp16,memory_growth=false"}, home, project)
    assert (cfg.device, cfg.precision, cfg.memory_growth) == ("gpu:0,1", "fp16", False)


def test_devswitchrc_replaces_the_file_search(home, project, tmp_path):
    write(home / ".devswitchrc", "device: cpu\nxla: true\n")
    write(project / ".devswitchrc", "device: gpu\n")
    a = write(tmp_path / "a.yaml", "precision: bf16\ndevice: gpu:0\n")
    b = write(tmp_path / "b.yaml", "device: gpu:1\n")
    cfg = resolve({"DEVSWITCHRC": f"{a}:{b}"}, home, project)
    assert (cfg.device, cfg.precision, cfg.xla) == ("gpu:1", "bf16", "auto")
    assert cfg["device"].source == "DEVSWITCHRC file" and cfg["device"].location.startswith(str(b))
    assert cfg.files == (str(a), str(b))


def test_project_file_is_found_upward_but_home_file_counts_once(home):
    write(home / ".devswitchrc", "device: cpu\n")
    deep = home / "a" / "b"
    deep.mkdir(parents=True)
    cfg = resolve({}, home, deep)
    assert cfg["device"].source == "user file"
    assert cfg.files == (str(home / ".devswitchrc"),)


def test_profile_applies_at_the_level_of_its_file(home, project):
    write(home / ".devswitchrc", "precision: fp32\nprofiles:\n  fast:\n    precision: half\n    xla: true\n")
    write(project / ".devswitchrc", "xla: false\n")
    cfg = resolve({"DEVSWITCH_PROFILE": "fast"}, home, project)
    assert cfg.precision == "half"
    assert cfg["precision"].source == "user file (profile fast)"
    assert cfg["precision"].location == f"{home / '.devswitchrc'}:4:16"
    # the project file is above the user file, so its xla wins over the user file's profile
    assert cfg.xla is False and cfg["xla"].source == "project file"
    # ...while the variables stay above every file
    cfg = resolve({"DEVSWITCH_PROFILE": "fast", "DEVSWITCH_PRECISION": "fp16"}, home, project)
    assert cfg.precision == "fp16"


def test_profile_can_be_selected_in_the_file_itself(home, project):
    write(project / ".devswitchrc", "profile: gpu\nprofiles:\n  gpu: {device: gpu, precision: half}\n")
    cfg = resolve({}, home, project)
    assert (cfg.device, cfg.precision, cfg.profile) == ("gpu", "half", "gpu")
    assert cfg.profiles == ("gpu",)


def test_empty_and_comment_only_files_mean_all_defaults(home, project):
    write(project / ".devswitchrc", "# nothing yet\n")
    cfg = resolve({}, home, project)
    for setting in SETTINGS:
        if setting.name == "backend":  # auto: resolved to what Keras itself picks, with that origin
            assert (cfg.backend, cfg["backend"].source) == ("tensorflow", "Keras")
            continue
        assert getattr(cfg, setting.name) == setting.default
    write(project / ".devswitchrc", "")
    assert resolve({}, home, project).device == "auto"


def test_disable_flag_is_read(home, project):
    assert resolve({"DEVSWITCH_DISABLE": "1"}, home, project).disabled
    assert not resolve({}, home, project).disabled


def test_config_is_immutable_and_serialises_without_mutation(home, project):
    cfg = resolve({"DEVSWITCH_THREADS": "3"}, home, project)
    with pytest.raises(Exception):
        cfg.values["device"] = None  # type: ignore[index]
    with pytest.raises(Exception):
        cfg.files = ()  # type: ignore[misc]
    before = dict(cfg.values)
    data = cfg.to_dict()
    assert data["threads"] == {"value": {"intra": 3, "inter": 0}, "source": "env var",
                               "location": "DEVSWITCH_THREADS"}
    assert dict(cfg.values) == before


def test_yaml_values_of_each_shape(home, project):
    write(project / ".devswitchrc", "threads: {intra: 4, inter: 1}\nmemory_growth: no\nreport: out/r.json\n")
    cfg = resolve({}, home, project)
    assert cfg.threads == Threads(4, 1) and cfg.memory_growth is False and cfg.report == "out/r.json"
