"""Every bad input gives a ConfigError naming the source, key, value, what is allowed and a fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from errorparts import parts

from _devswitch.config import resolve
from _devswitch.errors import ConfigError


def rc(project: Path, text: str | bytes) -> Path:
    path = project / ".devswitchrc"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# Each row: the file's text; where the error points in it (line:col); the key and the value it quotes; the fix
# its hint names. The wording around them is the errors' own business (errorparts.parts).
@pytest.mark.parametrize("text, at, named, fix", [
    pytest.param("device: [cpu\n", "2:1", ["malformed YAML"], "fix the YAML syntax",
                 id="malformed YAML names file:line:col"),
    pytest.param("- device\n- cpu\n", "1:1", ["mapping", "list"], "device: gpu", id="top level is a list"),
    pytest.param("just words\n", "1:1", ["mapping", "single value"], "device: gpu", id="top level scalar"),
    pytest.param("device: cpu\ndevcie: gpu\n", "2:1", ["'devcie'"], "did you mean 'device'?",
                 id="unknown key with suggestion"),
    pytest.param("device: 3\n", "1:9", ["3", "'device'", "gpu:N"], "did you mean 'gpu:3'?",
                 id="device given as a number"),
    pytest.param("memory_growth: maybe\n", "1:16", ["'maybe'", "'memory_growth'", "true or false"],
                 "default (true)", id="bool that is not a bool"),
    pytest.param("device: tpu\n", "1:9", ["'tpu'", "'device'", "auto, cpu, gpu, gpu:N"], "did you mean 'gpu'?",
                 id="unknown device"),
    pytest.param("device: gpu:x\n", "1:9", ["'gpu:x'", "'device'"], "default (auto)", id="gpu index not a number"),
    pytest.param("device: gpu:-1\n", "1:9", ["'gpu:-1'", "'device'"], "default (auto)", id="negative gpu index"),
    pytest.param("device: gpu:0,0\n", "1:9", ["'gpu:0,0'", "'device'", "gpu:0,1"], "default (auto)",
                 id="repeated gpu index"),
    pytest.param("precision: fp8\n", "1:12", ["'fp8'", "'precision'", "fp32, fp16, bf16, half"], "default (fp32)",
                 id="unknown precision"),
    pytest.param("threads: -2\n", "1:10", ["-2", "'threads'", "INTRA:INTER"], "default (0:0)", id="negative threads"),
    pytest.param("log_level: loud\n", "1:12", ["'loud'", "'log_level'", "quiet, error, warning, info, debug"],
                 "default (warning)", id="unknown log level"),
    pytest.param("report: yes\n", "1:9", ["'yes'", "'report'", "off, summary", ".jsonl"], "default (summary)",
                 id="report that is not a choice"),
    pytest.param("device: cpu\ndevice: gpu\n", "2:1", ["'device'", ".devswitchrc:1:1"], "keep one",
                 id="duplicate key"),
    pytest.param("profiles: [a, b]\n", "1:1", ["'profiles'", "mapping"], "device: gpu", id="profiles not a mapping"),
    pytest.param("profiles:\n  gpu:\n    devcie: gpu\n", "3:5", ["'devcie'"], "did you mean 'device'?",
                 id="unknown key inside a profile"),
    pytest.param("profiles:\n  slow:\n    precision: fp7\n", "3:16", ["'fp7'", "'precision'"], "default (fp32)",
                 id="bad value in an unselected profile is still reported"),
    pytest.param("profiles:\n  a:\n    profile: b\n", "3:5", ["'a'"], "remove 'profile:'", id="profile in profile"),
])
def test_bad_file(home, project, text, at, named, fix):
    """A bad file is a ConfigError (exit 2) at the file's line and column, quoting the key and value, with a fix."""
    path = rc(project, text)
    with pytest.raises(ConfigError) as info:
        resolve({}, home, project)
    parts(info, ConfigError, where=f"{path}:{at}", named=named, fix=fix, exit_code=2)


@pytest.mark.parametrize("env, where, named, fix", [
    pytest.param({"DEVSWITCH_FLAGS": "device="}, "DEVSWITCH_FLAGS", ["'device='"], "allowed for device: auto, cpu",
                 id="flags: key without value"),
    pytest.param({"DEVSWITCH_FLAGS": "=gpu"}, "DEVSWITCH_FLAGS", ["'=gpu'"], 'DEVSWITCH_FLAGS="device=gpu"',
                 id="flags: value without key"),
    pytest.param({"DEVSWITCH_FLAGS": "devicegpu"}, "DEVSWITCH_FLAGS", ["'devicegpu'", "KEY=VALUE"],
                 "did you mean 'device=gpu'?", id="flags: missing equals sign"),
    pytest.param({"DEVSWITCH_FLAGS": "precison=fp16"}, "DEVSWITCH_FLAGS", ["'precison'"], "did you mean 'precision'?",
                 id="flags: unknown key"),
    pytest.param({"DEVSWITCH_FLAGS": "precision=fp8"}, "DEVSWITCH_FLAGS (precision)", ["'fp8'", "'precision'"],
                 "default (fp32)", id="flags: bad value"),
    pytest.param({"DEVSWITCH_DEVICE": "gpu:x"}, "DEVSWITCH_DEVICE", ["'gpu:x'", "'device'"], "default (auto)",
                 id="env: bad device"),
    pytest.param({"DEVSWITCH_MEMORY_GROWTH": "maybe"}, "DEVSWITCH_MEMORY_GROWTH", ["'maybe'", "'memory_growth'"],
                 "default (true)", id="env: bad bool"),
    pytest.param({"DEVSWITCH_PRECISON": "fp16"}, "DEVSWITCH_PRECISON", ["DEVSWITCH_PRECISON"],
                 "did you mean DEVSWITCH_PRECISION?", id="env: misspelt variable"),
    pytest.param({"DEVSWITCH_PROFILE": "fast"}, "DEVSWITCH_PROFILE", ["'fast'"], "profiles defined: none",
                 id="unknown profile"),
    pytest.param({"DEVSWITCHRC": "/nonexistent/rc.yaml"}, "DEVSWITCHRC", ["/nonexistent/rc.yaml"], "devswitch init",
                 id="DEVSWITCHRC names a missing file"),
])
def test_bad_environment(home, project, env, where, named, fix):
    """A bad variable is a ConfigError naming the variable (and the key inside DEVSWITCH_FLAGS) and a fix."""
    with pytest.raises(ConfigError) as info:
        resolve(env, home, project)
    parts(info, ConfigError, where=where, named=named, fix=fix, exit_code=2)


def test_unknown_profile_suggests_the_defined_ones(home, project):
    path = rc(project, "profiles:\n  gpu-fast: {device: gpu}\n")
    with pytest.raises(ConfigError) as info:
        resolve({"DEVSWITCH_PROFILE": "gpu-fst"}, home, project)
    error = parts(info, ConfigError, where="DEVSWITCH_PROFILE", named=["'gpu-fst'"], fix="'gpu-fast'")
    assert f"{path}:2:3" in error.hint  # where the profile it suggests is defined


def test_unknown_explicit_argument(home, project):
    with pytest.raises(ConfigError) as info:
        resolve({}, home, project, {"precison": "bf16"})
    parts(info, ConfigError, where="devswitch.configure(precison=...)", named=["'precison'"],
          fix="did you mean 'precision'?")


def test_unreadable_file_is_named(home, project):
    (project / ".devswitchrc").mkdir()  # a directory where a file should be: cannot be read
    with pytest.raises(ConfigError) as info:
        resolve({}, home, project)
    error = parts(info, ConfigError, where=str(project / ".devswitchrc"), named=["directory"], fix="YAML file")
    assert "regular file" in error.message


def test_file_that_is_not_utf8(home, project):
    rc(project, b"device: \xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        resolve({}, home, project)
    parts(info, ConfigError, where=str(project / ".devswitchrc"), named=["UTF-8", "byte 8"], fix="UTF-8")


def test_python_object_tags_are_refused_without_running_anything(home, project, tmp_path):
    marker = tmp_path / "pwned"
    rc(project, f"device: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError) as info:
        resolve({}, home, project)
    parts(info, ConfigError, where=f"{project / '.devswitchrc'}:1:9",
          named=["'tag:yaml.org,2002:python/object/apply:os.system'", "'device'", "safe loader"], fix="plain value")
    assert not marker.exists()
    assert not os.path.exists(marker)


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                    reason="root can read files whatever their mode")
def test_file_without_read_permission(home, project):
    path = rc(project, "device: cpu\n")
    path.chmod(0)
    with pytest.raises(ConfigError) as info:
        resolve({}, home, project)
    parts(info, ConfigError, where=str(path), named=["Permission denied"])  # the file, the system's reason


@pytest.mark.parametrize("message, expected", [
    pytest.param("plain message\nmore", "ValueError: plain message", id="plain"),
    pytest.param("Exception encountered when calling M.call().\n\n\x1b[1mbatch 3 is bad\x1b[0m\n\nArguments "
                 "received by M.call():\n  • training=False", "ValueError: batch 3 is bad", id="keras layer call"),
    pytest.param("in user code:\n\n    File \"x.py\", line 3, in f  *\n        raise\n\n    ValueError: deep reason",
                 "ValueError: deep reason", id="tf.function user code"),
    pytest.param("", "ValueError", id="empty"),
])
def test_describe_digs_out_the_telling_line(message, expected):
    from _devswitch.errors import describe

    assert describe(ValueError(message)) == expected
