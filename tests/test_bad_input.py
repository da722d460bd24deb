"""Every bad input gives a ConfigError naming the source, key, value, what is allowed and a fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from _devswitch.config import resolve
from _devswitch.errors import ConfigError


def rc(project: Path, text: str | bytes) -> Path:
    path = project / ".devswitchrc"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text, pattern", [
    pytest.param("device: [cpu\n", r"\.devswitchrc:2:1: malformed YAML: .*\n  hint: fix the YAML syntax",
                 id="malformed YAML names file:line:col"),
    pytest.param("- device\n- cpu\n", r"\.devswitchrc:1:1: the top level must be a mapping .* found a list",
                 id="top level is a list"),
    pytest.param("just words\n", r"top level must be a mapping .* found a single value", id="top level scalar"),
    pytest.param("device: cpu\ndevcie: gpu\n", r"\.devswitchrc:2:1: unknown key 'devcie'\n  hint: did you "
                 r"mean 'device'\? valid keys: backend, device, precision", id="unknown key with suggestion"),
    pytest.param("device: 3\n", r":1:9: invalid value 3 for 'device': expected a string.*did you mean 'gpu:3'",
                 id="device given as a number"),
    pytest.param("memory_growth: maybe\n", r"invalid value 'maybe' for 'memory_growth': expected true or false",
                 id="bool that is not a bool"),
    pytest.param("device: tpu\n", r"invalid value 'tpu' for 'device': expected auto, cpu, gpu, gpu:N.*"
                 r"did you mean 'gpu'", id="unknown device"),
    pytest.param("device: gpu:x\n", r"invalid value 'gpu:x' for 'device'", id="gpu index not a number"),
    pytest.param("device: gpu:-1\n", r"invalid value 'gpu:-1' for 'device'", id="negative gpu index"),
    pytest.param("device: gpu:0,0\n", r"each GPU index at most once", id="repeated gpu index"),
    pytest.param("precision: fp8\n", r"invalid value 'fp8' for 'precision': expected one of fp32, fp16, bf16, "
                 r"half.*hint: fix it there, or remove it to use the default \(fp32\)", id="unknown precision"),
    pytest.param("threads: -2\n", r"invalid value -2 for 'threads'", id="negative threads"),
    pytest.param("log_level: loud\n", r"invalid value 'loud' for 'log_level': expected one of quiet, error",
                 id="unknown log level"),
    pytest.param("report: yes\n", r"invalid value .yes. for .report.: expected off, summary", id="report that is not a choice"),
    pytest.param("device: cpu\ndevice: gpu\n", r":2:1: key 'device' is given twice \(first at .*:1:1\)",
                 id="duplicate key"),
    pytest.param("profiles: [a, b]\n", r"'profiles' must be a mapping", id="profiles not a mapping"),
    pytest.param("profiles:\n  gpu:\n    devcie: gpu\n", r":3:5: unknown key 'devcie'.*did you mean 'device'",
                 id="unknown key inside a profile"),
    pytest.param("profiles:\n  slow:\n    precision: fp7\n", r":3:16: invalid value 'fp7' for 'precision'",
                 id="bad value in an unselected profile is still reported"),
    pytest.param("profiles:\n  a:\n    profile: b\n", r"cannot select another profile", id="profile in profile"),
])
def test_bad_file(home, project, text, pattern):
    path = rc(project, text)
    with pytest.raises(ConfigError, match="(?s)" + pattern) as info:
        resolve({}, home, project)
    assert str(path) in str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("env, pattern", [
    pytest.param({"DEVSWITCH_FLAGS": "device="}, r"DEVSWITCH_FLAGS: 'device=' has no value after '='\n  hint: "
                 r"allowed for device", id="flags: key without value"),
    pytest.param({"DEVSWITCH_FLAGS": "=gpu"}, r"DEVSWITCH_FLAGS: '=gpu' has no key before '='.*device=gpu",
                 id="flags: value without key"),
    pytest.param({"DEVSWITCH_FLAGS": "devicegpu"}, r"DEVSWITCH_FLAGS: 'devicegpu' is not KEY=VALUE\n  hint: "
                 r"did you mean 'device=gpu'\?", id="flags: missing equals sign"),
    pytest.param({"DEVSWITCH_FLAGS": "precison=fp16"}, r"unknown key 'precison'.*did you mean 'precision'",
                 id="flags: unknown key"),
    pytest.param({"DEVSWITCH_FLAGS": "precision=fp8"}, r"DEVSWITCH_FLAGS \(precision\): invalid value 'fp8'",
                 id="flags: bad value"),
    pytest.param({"DEVSWITCH_DEVICE": "gpu:x"}, r"DEVSWITCH_DEVICE: invalid value 'gpu:x' for 'device'",
                 id="env: bad device"),
    pytest.param({"DEVSWITCH_MEMORY_GROWTH": "maybe"}, r"DEVSWITCH_MEMORY_GROWTH: invalid value 'maybe'",
                 id="env: bad bool"),
    pytest.param({"DEVSWITCH_PRECISON": "fp16"}, r"DEVSWITCH_PRECISON: unknown variable.*did you mean "
                 r"DEVSWITCH_PRECISION\?", id="env: misspelt variable"),
    pytest.param({"DEVSWITCH_PROFILE": "fast"}, r"DEVSWITCH_PROFILE: unknown profile 'fast'\n  hint: profiles "
                 r"defined: none", id="unknown profile"),
    pytest.param({"DEVSWITCHRC": "/nonexistent/rc.yaml"}, r"DEVSWITCHRC: file not found: /nonexistent/rc.yaml"
                 r"\n  hint: create it with 'devswitch init'", id="DEVSWITCHRC names a missing file"),
])
def test_bad_environment(home, project, env, pattern):
    with pytest.raises(ConfigError, match="(?s)" + pattern):
        resolve(env, home, project)


def test_unknown_profile_suggests_the_defined_ones(home, project):
    path = rc(project, "profiles:\n  gpu-fast: {device: gpu}\n")
    with pytest.raises(ConfigError, match=rf"did you mean 'gpu-fast'\? profiles defined: gpu-fast \({path}:2:3\)"):
        resolve({"DEVSWITCH_PROFILE": "gpu-fst"}, home, project)


def test_unknown_explicit_argument(home, project):
    with pytest.raises(ConfigError, match=r"(?s)unknown setting 'precison'.*did you mean 'precision'"):
        resolve({}, home, project, {"precison": "bf16"})


def test_unreadable_file_is_named(home, project):
    (project / ".devswitchrc").mkdir()  # a directory where a file should be: cannot be read
    with pytest.raises(ConfigError, match=r"\.devswitchrc: is a directory, not a regular file"):
        resolve({}, home, project)


def test_file_that_is_not_utf8(home, project):
    rc(project, b"device: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"(?s)not a UTF-8 text file.*save the file as UTF-8"):
        resolve({}, home, project)


def test_python_object_tags_are_refused_without_running_anything(home, project, tmp_path):
    marker = tmp_path / "pwned"
    rc(project, f"device: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match=r"(?s):1:9: refused YAML tag 'tag:yaml.org,2002:python/object/apply:"
                                          r"os.system'.*safe loader"):
        resolve({}, home, project)
    assert not marker.exists()
    assert not os.path.exists(marker)


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                    reason="root can read files whatever their mode")
def test_file_without_read_permission(home, project):
    path = rc(project, "device: cpu\n")
    path.chmod(0)
    with pytest.raises(ConfigError, match=r"cannot read the file: Permission denied"):
        resolve({}, home, project)


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
