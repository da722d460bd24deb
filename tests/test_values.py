"""Values are clean after parsing, a project file writes only inside its project, and list inputs are bounded."""

from __future__ import annotations

import os
import re
import time

import numpy as np
import pytest
from errorparts import parts
from test_bad_input import rc  # write a .devswitchrc (text or bytes) into a folder

import devswitch
from _devswitch.config import resolve
from _devswitch.errors import ConfigError, TooLateError, visible
from _devswitch.sources import parse_flags

# --- 1. every value, from every source, is plain text after parsing ---------------------------------------

# (YAML in double quotes, the same value as Python text, what the message names)
ESCAPES = [
    pytest.param(r'"\e]0;pwned\a\e[2J.json"', "\x1b]0;pwned\x07\x1b[2J.json", r"U\+001B ESCAPE at position 1",
                 id="terminal title escape"),
    pytest.param(r'"out\0.json"', "out\x00.json", r"U\+0000 NULL at position 4", id="NUL"),
    pytest.param(r'"out\x85.json"', "out\x85.json", r"U\+0085 NEXT LINE \(NEL\) at position 4", id="NEL"),
    pytest.param(r'"out\u2028.json"', "out\u2028.json", r"U\+2028 LINE SEPARATOR at position 4", id="U+2028"),
    pytest.param(r'"x\u202enosj.json"', "x\u202enosj.json", r"U\+202E RIGHT-TO-LEFT OVERRIDE at position 2",
                 id="bidi override"),
    pytest.param(r'"x\x9b2J.json"', "x\x9b2J.json", r"U\+009B CONTROL SEQUENCE INTRODUCER at position 2",
                 id="C1 CSI"),
]


@pytest.mark.parametrize("yaml_text, text, name", ESCAPES)
def test_an_escaped_control_in_a_file_value_is_refused_with_its_name_and_position(home, project, yaml_text,
                                                                                  text, name):
    """A YAML escape delivers the character the raw-byte check never saw; the value check names it."""
    path = rc(project, f"report: {yaml_text}\n")
    with pytest.raises(ConfigError) as info:
        resolve({}, home, project)
    error = parts(info, ConfigError, where=f"{path}:1:9", named=["'report'"], fix="plain text")
    assert re.search(name, error.message)  # the character by its code point and name, and its position
    assert visible(str(info.value)) == str(info.value)  # the message itself carries no control character


@pytest.mark.parametrize("yaml_text, text, name", ESCAPES)
def test_the_same_value_from_a_variable_flags_or_configure_is_refused(home, project, yaml_text, text, name):
    for environ, explicit, where in (({"DEVSWITCH_REPORT": text}, None, "DEVSWITCH_REPORT"),
                                     ({"DEVSWITCH_FLAGS": f"report={text}"}, None, "DEVSWITCH_FLAGS (report)"),
                                     ({}, {"report": text}, "devswitch.configure(report=...)")):
        with pytest.raises(ConfigError) as info:
            resolve(environ, home, project, explicit)
        error = parts(info, ConfigError, where=where, named=["'report'"], fix="plain text")
        assert re.search(name, error.message)


def test_configure_refuses_an_unclean_value_and_changes_nothing(here):
    devswitch.configure(report="off")
    with pytest.raises(ConfigError) as info:
        devswitch.configure(report="out\x00.json")
    parts(info, ConfigError, where="devswitch.configure(report=...)", named=["U+0000", "4"])
    assert devswitch.config().report == "off"


# Each row: the file's text; then where the error points (line:col) and what it names (the character by its code
# point and name, its position, the item or key it is in), or None where the value is taken.
@pytest.mark.parametrize("text, at, named", [
    pytest.param('workers: ["a:1", "b\\u2028:2"]\n', "1:10", ["'workers'", "U+2028 LINE SEPARATOR", "position 2",
                                                             "item 2"], id="in a list item"),
    pytest.param('threads: {intra: "4\\e"}\n', "1:10", ["'threads'", "U+001B ESCAPE", "position 2", "key 1"],
                 id="in a mapping value"),
    pytest.param('threads: {"in\\u2066tra": 4}\n', "1:10", ["'threads'", "U+2066 LEFT-TO-RIGHT ISOLATE", "position 3",
                                                           "key 1"], id="in a mapping key"),
    pytest.param('profiles: {p: {device: "gpu\\u200f"}}\n', "1:24", ["'device'", "U+200F RIGHT-TO-LEFT MARK",
                                                                   "position 4"], id="in a profile nobody selected"),
    pytest.param('device: "\\tgpu\\t"\n', None, None, id="tabs at the ends are stripped, as before"),
    pytest.param("device: |\n  gpu\n", None, None, id="a block scalar's final newline"),
])
def test_nested_values_are_checked_and_whitespace_at_the_ends_is_left_to_the_parsers(home, project, text, at,
                                                                                     named):
    path = rc(project, text)
    if named is None:
        assert resolve({}, home, project).device == "gpu"
    else:
        with pytest.raises(ConfigError) as info:
            resolve({}, home, project)
        parts(info, ConfigError, where=f"{path}:{at}", named=named, fix="plain text")


def test_a_tab_inside_a_value_is_refused(home, project):
    with pytest.raises(ConfigError) as info:
        resolve({"DEVSWITCH_REPORT": "out\t.json"}, home, project)
    parts(info, ConfigError, where="DEVSWITCH_REPORT", named=["U+0009", "4"])


# --- 2. the raw text of a file: no hidden line breaks, no reordered text -------------------------------------

@pytest.mark.parametrize("text, at, name", [
    pytest.param("# a harmless comment\u2028precision: fp16\n", "1:21", "U+2028 LINE SEPARATOR",
                 id="U+2028 in a comment"),
    pytest.param("device: cpu\n# note\x85precision: fp16\n", "2:7", "U+0085 NEXT LINE (NEL)", id="NEL"),
    pytest.param("device: cpu  # x\u2029y\n", "1:17", "U+2029 PARAGRAPH SEPARATOR", id="U+2029"),
    pytest.param("precision: fp16\r# nothing to see\n", "1:16", "U+000D CARRIAGE RETURN", id="lone CR"),
    pytest.param("device: cpu # \u202e46pf :noisicerp\n", "1:15", "U+202E RIGHT-TO-LEFT OVERRIDE",
                 id="bidi override in a comment"),
    pytest.param("device: cpu\n#\u2066x\n", "2:2", "U+2066 LEFT-TO-RIGHT ISOLATE", id="bidi isolate"),
])
def test_a_hidden_line_break_or_bidi_override_in_a_file_is_refused_at_its_place(home, project, text, at, name):
    """The file's line and column, the character by its code point and name, and the way out."""
    path = rc(project, text)
    with pytest.raises(ConfigError) as info:
        resolve({}, home, project)
    parts(info, ConfigError, where=f"{path}:{at}", named=[name, ".devswitchrc"], fix="remove it")


def test_crlf_line_endings_are_still_read(home, project):
    rc(project, "device: cpu\r\nprecision: bf16\r\n")
    assert resolve({}, home, project).precision == "bf16"


# --- 3. a project file does not choose where devswitch writes outside the project ----------------------------

@pytest.mark.parametrize("value, why", [
    pytest.param("/tmp/devswitch-anywhere/x.json", "absolute", id="absolute"),
    pytest.param("../x.json", "'..'", id="dot-dot"),
    pytest.param("src/../../x.jsonl", "'..'", id="dot-dot through a folder"),
])
def test_a_project_file_cannot_name_a_report_outside_its_folder(home, project, value, why):
    path = rc(project, f"report: {value}\n")
    for cwd in (project, project / "src"):
        with pytest.raises(ConfigError) as info:
            resolve({}, home, cwd)
        error = parts(info, ConfigError, where=f"{path}:1:9", named=["'report'", f"'{value}'", why, f"({project})"])
        assert all(way in error.hint for way in ("~/.devswitchrc", "DEVSWITCH_REPORT", "--report"))


@pytest.mark.parametrize("value", ["/tmp/devswitch-anywhere/x.json", "../x.json"])
def test_the_same_report_from_the_user_file_a_variable_or_an_option_is_taken(home, project, value):
    rc(project, f"report: {value}\n")
    assert resolve({"DEVSWITCH_REPORT": value}, home, project).report == value
    assert resolve({}, home, project, {"report": value}).report == value
    (project / ".devswitchrc").unlink()
    rc(home, f"report: {value}\n")
    assert resolve({}, home, project).report == value
    assert resolve({"DEVSWITCHRC": str(home / ".devswitchrc")}, home, project).report == value


def test_a_project_profile_is_a_project_file_too(home, project):
    rc(project, "profiles: {out: {report: /tmp/x.json}}\n")
    with pytest.raises(ConfigError) as info:
        resolve({"DEVSWITCH_PROFILE": "out"}, home, project)
    parts(info, ConfigError, named=["/tmp/x.json"], fix="DEVSWITCH_REPORT")


def test_a_symbolic_link_out_of_the_project_is_followed_and_refused(home, project, tmp_path):
    (project / "out").symlink_to(tmp_path)
    rc(project, "report: out/x.json\n")
    with pytest.raises(ConfigError) as info:
        resolve({}, home, project)
    parts(info, ConfigError, where=f"{project / '.devswitchrc'}:1:9", named=["symbolic link", f"(to {tmp_path}"],
          fix="DEVSWITCH_REPORT")
    (project / "inside.json").symlink_to(tmp_path / "x.json")  # the file itself a link: the same
    rc(project, "report: inside.json\n")
    with pytest.raises(ConfigError) as info:
        resolve({}, home, project)
    parts(info, ConfigError, where=f"{project / '.devswitchrc'}:1:9", named=["symbolic link", f"(to {tmp_path}"],
          fix="DEVSWITCH_REPORT")


@pytest.mark.parametrize("value", ["results.jsonl", "src/../runs/r.json", "off", "summary"])
def test_a_report_inside_the_project_is_taken_from_it(home, project, value):
    rc(project, f"report: {value}\n")
    assert resolve({}, home, project / "src").report == value


# --- 4. bounded lists; /dev/null is no file -----------------------------------------------------------------

def test_seventeen_devswitchrc_paths_are_refused_before_any_is_read(home, project, tmp_path):
    paths = [str(tmp_path / f"missing-{i}") for i in range(17)]
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        resolve({"DEVSWITCHRC": os.pathsep.join(paths)}, home, project)
    parts(info, ConfigError, where="DEVSWITCHRC", named=["17", "16"], fix="at most 16")
    with pytest.raises(ConfigError) as info:
        resolve({"DEVSWITCHRC": os.pathsep.join([str(tmp_path / "big")] * 5000)}, home, project)
    parts(info, ConfigError, where="DEVSWITCHRC", named=["5000", "16"], fix="at most 16")
    assert time.perf_counter() - start < 5


def test_sixteen_devswitchrc_paths_are_read_and_the_last_wins(home, project, tmp_path):
    paths = []
    for i in range(16):
        paths.append(tmp_path / f"rc{i}")
        paths[-1].write_text(f"threads: {i}\n")
    config = resolve({"DEVSWITCHRC": os.pathsep.join(map(str, paths))}, home, project)
    assert config.threads.intra == 15 and len(config.files) == 16


def test_dev_null_means_no_configuration_file(home, project):
    rc(project, "precision: bf16\n")
    config = resolve({"DEVSWITCHRC": os.devnull}, home, project)
    assert config.precision == "fp32" and config["precision"].source == "default"
    (project / ".devswitchrc").unlink()
    (project / ".devswitchrc").symlink_to(os.devnull)  # a dotfile pointed at /dev/null: empty too
    assert resolve({}, home, project).precision == "fp32"


def test_a_devswitchrc_path_with_a_control_character_is_refused(home, project):
    with pytest.raises(ConfigError) as info:
        resolve({"DEVSWITCHRC": "/tmp/\x1b[2Jx"}, home, project)
    parts(info, ConfigError, where="DEVSWITCHRC", named=["U+001B ESCAPE", "position 6"], fix="rename the file")


def test_flags_entries_and_device_lists_are_bounded():
    parse_flags(",".join(["precision=fp32"] * 64))
    with pytest.raises(ConfigError) as info:
        parse_flags(",".join(["precision=fp32"] * 65))
    parts(info, ConfigError, where="DEVSWITCH_FLAGS", named=["64", "KEY=VALUE"], fix="each setting once")
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        parse_flags("device=gpu:0," + ",".join(["1"] * 60_000))
    parts(info, ConfigError, where="DEVSWITCH_FLAGS", named=["'device'", "64"], fix="allowed for device")
    assert time.perf_counter() - start < 5
    assert parse_flags("device=gpu:0,1,2,precision=fp16")[0].raw == "gpu:0,1,2"


def test_a_device_list_holds_at_most_64_gpus(home, project):
    many = ",".join(str(i) for i in range(65))
    with pytest.raises(ConfigError) as info:
        resolve({"DEVSWITCH_DEVICE": f"gpu:{many}"}, home, project)
    parts(info, ConfigError, where="DEVSWITCH_DEVICE", named=["'device'", "64 GPU"], fix="default (auto)")
    assert resolve({"DEVSWITCH_DEVICE": "gpu:" + ",".join(str(i) for i in range(64))}, home, project).device


def test_a_value_too_large_to_check_is_refused_not_walked(home, project):
    with pytest.raises(ConfigError) as info:
        resolve({}, home, project, {"workers": ["a:1"] * 20_000})
    parts(info, ConfigError, where="devswitch.configure(workers=...)", named=["'workers'", "10000"])


# --- numpy numbers are numbers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [np.int64(4), np.int32(4), np.uint8(4)])
def test_numpy_integers_are_whole_numbers(home, project, value):
    config = resolve({}, home, project, {"threads": value, "cpu_replicas": value, "worker_index": value})
    assert config.threads.intra == 4 and config.cpu_replicas == 4 and type(config.cpu_replicas) is int
    assert resolve({}, home, project, {"threads": {"intra": value, "inter": np.int16(2)}}).threads == (4, 2)


def test_numpy_bools_are_booleans_where_booleans_are_expected_and_not_numbers(home, project):
    config = resolve({}, home, project, {"memory_growth": np.bool_(False), "batch_timing": np.int64(1)})
    assert config.memory_growth is False and config.batch_timing is True
    with pytest.raises(ConfigError) as info:
        resolve({}, home, project, {"threads": np.bool_(True)})
    parts(info, ConfigError, where="devswitch.configure(threads=...)", named=["True", "'threads'"], fix="default")


def test_configure_takes_numpy_integers(here):
    """Accepted as values; TensorFlow alone may refuse new pool sizes once its runtime is up (an earlier test)."""
    devswitch.configure(worker_index=np.int64(3), report="off")
    assert devswitch.config().worker_index == 3
    try:
        devswitch.configure(threads=np.int64(4))
    except TooLateError:
        return
    assert devswitch.config().threads.intra == 4
