"""The switch never lies and never loses: hostile files, values that mean what the docs say, settings
that survive Keras' resets, refused values that change nothing, state that reset() undoes."""

from __future__ import annotations

import os
import re
import threading

import keras
import numpy as np
import pytest
from childqueue import Child, children
from errorparts import parts, printed
from test_bad_input import rc  # write a .devswitchrc (text or bytes) into a folder

import devswitch
from _devswitch import session, state
from _devswitch.cli import build_parser
from _devswitch.cli.common import explicit_from_args
from _devswitch.config import resolve
from _devswitch.errors import ConfigError
from _devswitch.settings import Threads

# --- 1. a config file cannot hurt the machine ----------------------------------------------------------

def _laughs(levels: int = 9, width: int = 9) -> str:
    first = "&a0 [" + ",".join(["lol"] * width) + "]"
    rest = [f"&a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels + 1)]
    return "device: [" + ", ".join([first, *rest]) + "]\n"


HOSTILE = [
    pytest.param(_laughs(), r":1:\d+: refused: YAML aliases expand this file to more than 10000 values",
                 id="billion laughs"),
    pytest.param("device: " + "[" * 1000 + "]" * 1000 + "\n", r":1:\d+: refused: nesting deeper than 32 levels",
                 id="1000 levels of ["),
    pytest.param("device: " + "[" * 100_000 + "]" * 100_000 + "\n", r"refused: nesting deeper than 32 levels",
                 id="100000 levels of ["),
    pytest.param(b"device: cpu\x00\n", r":1:12: control character U\+0000 \(NUL\)", id="NUL byte"),
    pytest.param(b"device: c\x07pu\n", r":1:10: control character U\+0007 \(BEL\)", id="BEL byte"),
    pytest.param(b"device: cpu\x1b[31m\n", r"control character U\+001B", id="escape sequence"),
    pytest.param("# " + "x" * (2 << 20) + "\n", r"the file is larger than 1024 KiB", id="2 MiB file"),
    pytest.param("device: [" + "x," * 300_000 + "x]\n", r"refused: more than 10000 values", id="300k values"),
    pytest.param("threads: " + "9" * 5000 + "\n", r"a number of 5000 digits is out of range", id="5000 digits"),
    pytest.param("device: 2001-13-45\n", r"cannot read the value of 'device': month must be in 1..12",
                 id="impossible date"),
    pytest.param("device: !!python/object/apply:os.system [echo hi]\n", r"refused YAML tag", id="python tag"),
]


def _raised_within(seconds: float, call) -> BaseException | None:
    """What ``call()`` raised, run in a thread that must end within ``seconds`` (a hang, not a speed, fails)."""
    raised: list[BaseException] = []

    def target():
        try:
            call()
        except BaseException as error:  # noqa: BLE001 - handed to the test to check
            raised.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: the input is not bounded"
    return raised[0] if raised else None


@pytest.mark.parametrize("text, pattern", HOSTILE)
def test_hostile_file_is_a_short_clear_error_in_bounded_time(home, project, text, pattern):
    """Refused, not worked through: the bound here is generous (60 s, where it takes well under a second);
    how much time and memory each case costs beside an empty file is benchmarks/bench_hostile_config.py."""
    path = rc(project, text)
    error = _raised_within(60, lambda: resolve({}, home, project))
    assert isinstance(error, ConfigError), f"expected a ConfigError, got {error!r}"
    assert re.search("(?s)" + pattern, str(error)), str(error)
    assert str(path) in str(error) and len(str(error)) < 600


def test_a_huge_bad_value_is_quoted_by_a_short_prefix(home, project):
    rc(project, 'device: "' + "x" * 900_000 + '"\n')
    with pytest.raises(ConfigError) as info:
        resolve({}, home, project)
    error = parts(info, ConfigError, where=f"{project / '.devswitchrc'}:1:9", named=["'device'"])
    assert re.search(r"'x+\.\.\.x+'", error.message)  # the value by its start and end
    assert len(str(info.value)) < 400


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "/dev/urandom", "directory", "broken link"])
def test_only_regular_files_are_read(home, project, kind):
    path = project / ".devswitchrc"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "broken link":
        path.symlink_to(project / "nowhere")
    else:
        path.symlink_to(kind)
    expected = {"fifo": "FIFO", "/dev/zero": "character device", "/dev/urandom": "character device",
                "directory": "directory", "broken link": "symbolic link"}[kind]  # the kind of file found
    with pytest.raises(ConfigError) as info:
        resolve({}, home, project)
    parts(info, ConfigError, where=str(path), named=[expected])


def test_devswitchrc_naming_a_device_file_is_refused(home, project):
    with pytest.raises(ConfigError) as info:
        resolve({"DEVSWITCHRC": "/dev/zero"}, home, project)
    parts(info, ConfigError, where="/dev/zero", named=["character device"], fix="YAML file")


def test_a_symlink_to_a_regular_file_is_read(home, project, tmp_path):
    target = tmp_path / "shared.yaml"
    target.write_text("precision: bf16\n")
    (project / ".devswitchrc").symlink_to(target)
    assert resolve({}, home, project).precision == "bf16"


@pytest.mark.parametrize("value, named, fix", [
    pytest.param("~nosuchuser_devswitch/x", ["'nosuchuser_devswitch'"], "~/", id="~user"),
    pytest.param("/tmp/" + "a" * 300, ["/tmp/aaa", "File name too long"], "fix the path", id="300-char name"),
])
def test_bad_paths_are_config_errors(home, project, value, named, fix):
    """A path the system refuses is a ConfigError naming DEVSWITCHRC, the part refused, and the way out."""
    with pytest.raises(ConfigError) as info:
        resolve({"DEVSWITCHRC": value}, home, project)
    parts(info, ConfigError, where="DEVSWITCHRC", named=named, fix=fix)


def test_tilde_in_devswitchrc_is_the_resolvers_home(home, project):
    (home / "mine.yaml").write_text("precision: fp16\n")
    cfg = resolve({"DEVSWITCHRC": "~/mine.yaml"}, home, project)
    assert cfg.precision == "fp16" and cfg["precision"].location.startswith(str(home))


@pytest.mark.skipif(os.geteuid() == 0, reason="root passes every permission check")
def test_unreadable_home_is_a_config_error(tmp_path, project):
    locked = tmp_path / "locked"
    (locked / "inner").mkdir(parents=True)
    locked.chmod(0)
    try:
        with pytest.raises(ConfigError) as info:
            resolve({}, locked / "inner", project)
        parts(info, ConfigError, named=["Permission denied"])  # the system's reason
    finally:
        locked.chmod(0o755)


@pytest.mark.subprocess
def test_unreadable_home_at_import_is_one_line_not_a_traceback(run_python, tmp_path):
    """A HOME whose .devswitchrc cannot even be checked ends the script with the message (exit 2)."""
    home = tmp_path / "h"
    home.mkdir()
    (home / ".devswitchrc").mkdir()  # fails for root too: a directory is not a regular file
    script = tmp_path / "s.py"
    script.write_text("import devswitch\nprint('ran')\n")
    done = run_python(script, env={"HOME": str(home)})
    assert done.returncode == 2, done.stderr
    printed(done.stderr, where=str(home / ".devswitchrc"), named=["directory"])  # the file, what is in its place


def test_anchors_and_merge_keys_share_settings_between_profiles(home, project):
    rc(project, "profiles:\n  base: &base {device: cpu, precision: bf16}\n"
                "  fast: {<<: *base, precision: fp16}\n  same: *base\nprofile: fast\n")
    cfg = resolve({}, home, project)
    assert (cfg.device, cfg.precision) == ("cpu", "fp16")
    assert resolve({"DEVSWITCH_PROFILE": "same"}, home, project).precision == "bf16"


# --- 2. a value means what the documentation says -----------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("threads: 4\n", Threads(4, 0)),
    ("threads: 4:2\n", Threads(4, 2)),      # YAML 1.1 would read 242
    ("threads: 2:1\n", Threads(2, 1)),      # ... and 121
    ("threads: '4:2'\n", Threads(4, 2)),
    ("threads: {intra: 4, inter: 2}\n", Threads(4, 2)),
    ("threads: 010\n", Threads(10, 0)),     # no surprise octal
    ("threads: 0o10\n", Threads(8, 0)),     # YAML 1.2's own octal
    ("threads: 0\n", Threads(0, 0)),
])
def test_threads_forms_from_a_file(home, project, text, expected):
    rc(project, text)
    assert resolve({}, home, project).threads == expected


@pytest.mark.parametrize("env, expected", [
    ({"DEVSWITCH_THREADS": "4"}, Threads(4, 0)),
    ({"DEVSWITCH_THREADS": "4:2"}, Threads(4, 2)),
    ({"DEVSWITCH_FLAGS": "threads=4:2"}, Threads(4, 2)),
])
def test_threads_forms_from_a_variable(home, project, env, expected):
    assert resolve(env, home, project).threads == expected


@pytest.mark.parametrize("argv, expected", [
    (["--threads", "4"], Threads(4, 0)),
    (["--threads", "4:2"], Threads(4, 2)),
])
def test_threads_forms_from_an_option(home, project, argv, expected):
    args = build_parser().parse_args(["info", *argv])
    assert resolve({}, home, project, explicit_from_args(args)).threads == expected
    assert resolve({}, home, project, {"threads": argv[1]}).threads == expected


@pytest.mark.parametrize("var", ["DEVSWITCH_THREADS", "DEVSWITCH_CPU_REPLICAS", "DEVSWITCH_WORKER_INDEX"])
@pytest.mark.parametrize("value", ["⁴", "٤", "4.0", "1e3", "-1", " "])
def test_numbers_are_ascii_digits_in_range(home, project, var, value):
    if not value.strip():
        value = "9" * 12
    with pytest.raises(ConfigError) as info:
        resolve({var: value}, home, project)
    error = parts(info, ConfigError, where=var, named=[f"'{var.removeprefix('DEVSWITCH_').lower()}'"])
    assert re.search(r"from 0 to \d+", error.message)  # the range allowed


@pytest.mark.parametrize("setting, value", [("threads", 1025), ("threads", 10**20), ("threads", "100000"),
                                            ("cpu_replicas", 257), ("worker_index", 70000)])
def test_every_number_has_a_documented_range(home, project, setting, value):
    with pytest.raises(ConfigError) as info:
        resolve({}, home, project, {setting: value})
    error = parts(info, ConfigError, where=f"devswitch.configure({setting}=...)", named=[f"'{setting}'"])
    assert re.search(r"\b0 to \d+", error.message)  # the range allowed


@pytest.mark.parametrize("raw, expected", [("cuda", "gpu"), ("cuda:1", "gpu:1"), ("cuda:0,1", "gpu:0,1"),
                                           ("CUDA", "gpu"), ("gpu:0", "gpu:0")])
def test_theano_cuda_spellings_are_gpu(home, project, raw, expected):
    assert resolve({"DEVSWITCH_DEVICE": raw}, home, project).device == expected


# Each row: the file's text; the error's line:col in it; what it quotes; the fix its hint names.
@pytest.mark.parametrize("text, at, named, fix", [
    pytest.param("device: cpu\n\tprecision: bf16\n", "2:1", ["malformed YAML", "'\\t'"], "spaces, not tabs",
                 id="tab"),
    pytest.param("device: сpu\n", "1:9", ["'сpu'", "'device'"], "'с' (U+0441 CYRILLIC SMALL LETTER ES)",
                 id="Cyrillic look-alike value"),
    pytest.param("dеvice: cpu\n", "1:1", ["'dеvice'"], "'е' (U+0435 CYRILLIC SMALL LETTER IE)",
                 id="Cyrillic look-alike key"),
    pytest.param("profiles:\n  a: {device: cpu}\n  a: {device: gpu}\n", "3:3", ["'a'", ".devswitchrc:2:3"],
                 "keep one", id="profile defined twice"),
    pytest.param("profiles:\n  1: {device: cpu}\n", "2:3", ["'1'"], "e.g. gpu_fast", id="profile name is a number"),
    pytest.param("profiles:\n  [a, b]: {device: cpu}\n", "2:3", ["profile name"], "e.g. gpu_fast",
                 id="profile name is a list"),
    pytest.param("profiles:\n  ~: {device: cpu}\n", "2:3", ["'~'"], "e.g. gpu_fast", id="profile name null"),
])
def test_small_surprises_get_their_own_message(home, project, text, at, named, fix):
    """A look-alike character, a tab, a profile defined twice or not named by a name: each its own fix."""
    path = rc(project, text)
    with pytest.raises(ConfigError) as info:
        resolve({}, home, project)
    parts(info, ConfigError, where=f"{path}:{at}", named=named, fix=fix)
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize("text, expected", [("memory_growth: 1\n", True), ("memory_growth: 0\n", False),
                                            ("memory_growth: yes\n", True)])
def test_memory_growth_takes_what_its_message_offers(home, project, text, expected):
    rc(project, text)
    assert resolve({}, home, project).memory_growth is expected


def test_memory_growth_refuses_other_numbers(home, project):
    rc(project, "memory_growth: 2\n")
    with pytest.raises(ConfigError) as info:
        resolve({}, home, project)
    parts(info, ConfigError, where=f"{project / '.devswitchrc'}:1:16", named=["2", "'memory_growth'", "true", "1/0"],
          fix="default (true)")


# --- 3. the switch is never silently dropped ------------------------------------------------------------

def _dense_dtype() -> str:
    layer = keras.layers.Dense(2)
    layer.build((None, 3))
    return layer.compute_dtype


def test_policy_survives_clear_session_on_a_real_model(here):
    devswitch.configure(device="cpu", precision="bf16", report="off")
    keras.backend.clear_session()
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(loss="mse")
    model.fit(np.zeros((8, 4)), np.zeros((8, 3)), verbose=0)
    assert model.layers[0].compute_dtype == "bfloat16"
    assert keras.config.dtype_policy().name == "mixed_bfloat16"
    keras.utils.clear_session(free_memory=False)
    assert _dense_dtype() == "bfloat16"


def test_policy_holds_in_a_new_thread_and_the_users_own_policy_wins(here):
    devswitch.configure(device="cpu", precision="bf16", report="off")
    seen = []
    thread = threading.Thread(target=lambda: seen.append(_dense_dtype()))
    thread.start()
    thread.join()
    assert seen == ["bfloat16"]
    keras.config.set_dtype_policy("float32")  # the user's own choice, after devswitch's
    assert _dense_dtype() == "float32"


def test_reset_restores_keras_and_the_environment(here):
    before = {name: getattr(keras.Model, name) for name in ("compile", "fit", "evaluate", "predict")}
    log_level = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    from keras.src.backend.common import global_state

    getter = global_state.get_global_attribute
    devswitch.configure(device="cpu", precision="bf16", xla="true", report="summary", log_level="error")
    assert keras.Model.compile is not before["compile"] and keras.Model.fit is not before["fit"]
    devswitch.reset()
    assert {name: getattr(keras.Model, name) for name in before} == before
    assert global_state.get_global_attribute is getter
    assert keras.config.dtype_policy().name == "float32"
    assert os.environ.get("TF_CPP_MIN_LOG_LEVEL") == log_level
    assert session.plan() is None and devswitch.runs() == []
    assert not state._undo


class _WouldCompile(keras.Sequential):
    """A model for which Keras' own jit_compile="auto" says yes (as on a GPU or on JAX)."""

    def _resolve_auto_jit_compile(self):
        return True


@pytest.mark.parametrize("xla, expected", [("auto", True), ("false", False), ("true", True)])
def test_xla_auto_leaves_the_choice_to_keras(here, xla, expected):
    devswitch.configure(device="cpu", xla=xla, report="off")
    model = _WouldCompile([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(loss="mse")
    assert model.jit_compile is expected
    model.compile(loss="mse", jit_compile=False)  # the script's own argument always wins
    assert model.jit_compile is False


def test_xla_defaults_to_auto(home, project):
    assert resolve({}, home, project).xla == "auto"


def test_refused_configure_changes_nothing(here):
    plan = devswitch.configure(device="cpu", precision="bf16", report="off")
    for bad in ({"threads": 10**20}, {"threads": 100_000}, {"precision": "fp8"}, {"strategy": "multi_worker"}):
        with pytest.raises(ConfigError):
            devswitch.configure(**bad)
        assert devswitch.plan() is plan and devswitch.config().precision == "bf16"
        assert keras.config.dtype_policy().name == "mixed_bfloat16"


def test_configure_after_building_warns_and_the_timed_call_is_marked(here, capfd):
    devswitch.configure(device="cpu", report="summary")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(loss="mse")
    capfd.readouterr()
    devswitch.configure(precision="bf16")
    err = capfd.readouterr().err
    line = next(line for line in err.splitlines() if "'sequential'" in line)  # the model by its name
    assert "float32" in line and "mixed_bfloat16" in line  # the policy it was built with, the one applied now
    assert "configure(precision=...)" in err  # the fix: build after configuring
    model.predict(np.zeros((4, 4)), verbose=0)
    record = devswitch.runs()[-1]
    assert record.stale_policy and record.applied_policy == "mixed_bfloat16"
    from _devswitch.render.calls import render_calls

    assert "model built under float32, not the applied mixed_bfloat16" in render_calls([record])


def test_configure_from_two_threads_leaves_one_consistent_state(here):
    devswitch.configure(device="cpu", report="off")
    for trial in range(6):
        threads = [threading.Thread(target=devswitch.configure, kwargs={"precision": p}) for p in ("bf16", "fp16")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        precision = devswitch.config().precision
        assert devswitch.plan().precision == precision, trial
        assert keras.config.dtype_policy().name == devswitch.plan().policy, trial


@pytest.mark.subprocess
def test_disable_means_nothing_is_read_or_validated(run_python, tmp_path):
    home = tmp_path / "subhome"
    home.mkdir()
    (home / ".devswitchrc").write_text("device: [broken\n")
    script = tmp_path / "s.py"
    script.write_text("import sys, devswitch\nprint('tf' if 'tensorflow' in sys.modules else 'no tf')\n")
    done = run_python(script, env={"DEVSWITCH_DISABLE": "1", "DEVSWITCH_DEVICE": "tpu", "DEVSWITCH_NOSUCH": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "no tf" and done.stderr == ""
    done = run_python(script, env={"DEVSWITCH_DISABLE": "maybe"})
    assert done.returncode == 2
    printed(done.stderr, where="DEVSWITCH_DISABLE", named=["'maybe'"], fix="DEVSWITCH_DISABLE=1")


def _ipython_script(root):
    """A script that imports IPython (when it is installed), then devswitch with a setting it refuses, then Keras
    (where the default backend's multi_worker cluster is checked: the backend is the script's until then)."""
    import importlib.util

    if importlib.util.find_spec("IPython") is None:
        return {}
    write = lambda folder: (folder / "s.py").write_text("import IPython\nimport devswitch\nimport keras\nprint('ran')\n")  # noqa
    return {"s.py": Child(["s.py"], {"DEVSWITCH_STRATEGY": "multi_worker"}, prepare=write)}


ipython_script = children(_ipython_script)


@pytest.mark.subprocess
def test_a_script_with_ipython_importable_gets_one_line_not_a_traceback(ipython_script):
    """TensorFlow imports IPython where it is installed; a script is still a script."""
    pytest.importorskip("IPython")
    done, _ = ipython_script("s.py")
    assert done.returncode == 2, done.stderr
    printed(done.stderr, named=["multi_worker"])  # the setting refused, as one error
    assert "ran" not in done.stdout


FORMS = [("device", t, v) for t, v in [("auto", "auto"), ("cpu", "cpu"), ("gpu", "gpu"), ("gpu:1", "gpu:1"),
                                       ("gpu:0,1", "gpu:0,1"), ("cuda:1", "gpu:1")]] + \
    [("precision", t, v) for t, v in [("fp32", "fp32"), ("fp16", "fp16"), ("bf16", "bf16"), ("half", "half"),
                                      ("float32", "fp32"), ("mixed_float16", "fp16"), ("mixed_bfloat16", "bf16")]] + \
    [("memory_growth", t, v) for t, v in [("true", True), ("false", False), ("yes", True), ("off", False),
                                          ("1", True), ("0", False)]] + \
    [("xla", t, v) for t, v in [("auto", "auto"), ("true", True), ("false", False)]] + \
    [("threads", "4", Threads(4, 0)), ("threads", "4:2", Threads(4, 2)), ("threads", "1024:0", Threads(1024, 0)),
     ("log_level", "quiet", "quiet"), ("report", "off", "off"), ("report", "out.json", "out.json"),
     ("strategy", "mirrored", "mirrored"), ("cpu_replicas", "2", 2), ("workers", "h1:1,h2:2", ("h1:1", "h2:2")),
     ("worker_index", "1", 1), ("fallback", "error", "error"), ("batch_timing", "on", True)]


@pytest.mark.parametrize("key, text, expected", FORMS, ids=[f"{k}={t}" for k, t, _ in FORMS])
def test_each_documented_form_means_the_same_from_a_file_a_variable_and_an_option(home, project, key, text,
                                                                                   expected):
    rc(home, f"{key}: {text}\n")  # the user's file (a project file may not set workers)
    from_file = getattr(resolve({}, home, project), key)
    (home / ".devswitchrc").unlink()
    from_env = getattr(resolve({f"DEVSWITCH_{key.upper()}": text}, home, project), key)
    args = build_parser().parse_args(["info", "--" + key.replace("_", "-"), text])
    from_option = getattr(resolve({}, home, project, explicit_from_args(args)), key)
    assert from_file == from_env == from_option == expected


# --- 4. nothing measured is lost: the report at exit ------------------------------------------------------

@pytest.mark.subprocess
def test_each_run_keeps_its_own_context_in_the_report_and_a_bad_report_loses_nothing(switched_runs):
    """Two processes (fp32 by the one import, bf16 by `devswitch run`) append to one report, each with its
    own plan; a third, told to write to a file that is not a report, keeps its records beside it."""
    from _devswitch.results import read_report

    runs = switched_runs  # shared with test_run.py: each starts TensorFlow
    assert runs.imported.returncode == 0, runs.imported.stderr
    assert runs.script.returncode == 1, runs.script.stderr  # the script raised its own error after its calls
    report = read_report(runs.report)
    assert [run.plan["precision"] for run in report] == ["fp32", "bf16"], "each run keeps its own plan"
    assert [len(run.records) for run in report] == [4, 4], "fit, evaluate, predict, predict in each run"

    done = runs.module
    assert done.returncode == 7 and "Traceback" not in done.stderr, done.stderr
    assert str(runs.wrong) in done.stderr and "4 record(s)" in done.stderr  # the file named, the records kept
    assert runs.wrong.read_text() == "[]\n", "the user's file is left as it was"
    kept = [p for p in runs.base.iterdir() if p.name.startswith("wrong.json.devswitch-")]
    assert len(kept) == 1 and len(read_report(kept[0])[0].records) == 4
