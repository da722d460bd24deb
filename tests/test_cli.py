"""The devswitch command: info, init, and errors printed without tracebacks."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from conftest import CPU_FEATURES, Child, _cleared, children, clean_environ
from errorparts import printed

from _devswitch.cli import main
from _devswitch.docs import render_example


@pytest.fixture
def cli_env(monkeypatch, tmp_path):
    for var in [v for v in __import__("os").environ if _cleared(v)]:
        monkeypatch.delenv(var)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _cpu_flags() -> set[str]:
    """This machine's CPU flags, read here from /proc/cpuinfo rather than through devswitch (under test), with
    the hidden-feature lane's bf16 edits applied the simple way (``-AVX512-BF16`` drops ``avx512_bf16``)."""
    try:
        text = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        text = ""
    flags = {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    for edit in filter(None, __import__("os").environ.get(CPU_FEATURES, "").split(",")):
        flag = edit[1:].lower().replace("-", "_")
        flags = flags | {flag} if edit[0] == "+" else flags - {flag}
    return flags


def _tensorflow_sees_a_gpu() -> bool:
    """Asked of TensorFlow itself, not of devswitch's detection (under test)."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


@pytest.mark.cpu_features
def test_info_json_has_the_documented_schema(cli_env, monkeypatch, capsys):
    (cli_env / ".devswitchrc").write_text("precision: half\n")
    monkeypatch.setenv("DEVSWITCH_DEVICE", "cpu")
    assert main(["info", "--json", "--xla", "true"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"versions", "devices", "config", "resolved"} <= set(data)
    assert data["versions"]["tensorflow"] and data["versions"]["keras"].startswith("3.")
    assert data["devices"]["cpu"]["cores"] >= 1 and isinstance(data["devices"]["gpus"], list)
    assert data["config"]["device"] == {"value": "cpu", "source": "env var", "location": "DEVSWITCH_DEVICE"}
    assert data["config"]["precision"]["source"] == "project file"
    assert data["config"]["precision"]["location"].endswith(".devswitchrc:1:12")
    assert data["config"]["xla"] == {"value": True, "source": "explicit", "location": "--xla"}
    assert data["resolved"]["device"] == "cpu"
    flags = _cpu_flags()  # half on the CPU depends on this CPU: the answer written out for each kind
    if "amx_bf16" in flags:
        assert data["resolved"]["precision"] == "bf16"
        assert data["resolved"]["precision_reason"].startswith("half: CPU has AMX-BF16: ")
    elif "avx512_bf16" in flags:
        assert data["resolved"]["precision"] == "bf16"
        assert data["resolved"]["precision_reason"].startswith("half: CPU has AVX512-BF16: ")
    else:
        assert data["resolved"]["precision"] == "fp32"
        edited = __import__("os").environ.get(CPU_FEATURES)
        note = f" ({CPU_FEATURES}={edited} applied)" if edited else ""
        assert data["resolved"]["precision_reason"] == (f"half: CPU has no native bf16 (AVX512-BF16/AMX){note}, fp32 "
                                                        "is fastest [tensorflow]")
    assert data["resolved"]["xla"] is True and data["resolved"]["meanings"]["xla"].startswith("jit_compile=True")


MACHINE = "on this machine, with "  # the heading of info's decision, above its rows


def _row(out: str, name: str, after: str | None = None) -> list[str]:
    """The cells of the first line of ``out`` (below the line that starts with ``after``, when given) whose first
    cell is ``name``: info's rows, cells parted by two spaces or more."""
    lines = out.splitlines()
    if after is not None:
        lines = lines[next(i for i, line in enumerate(lines) if line.startswith(after)) :]
    for line in lines:
        cells = re.split(r"\s{2,}", line.strip())
        if cells[0] == name:
            return cells
    raise AssertionError(f"no {name!r} row in:\n{out}")


def test_info_text_shows_each_value_with_its_source(cli_env, monkeypatch, capsys):
    monkeypatch.setenv("DEVSWITCH_FLAGS", "precision=bf16")
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert _row(out, "precision") == ["precision", "bf16", "DEVSWITCH_FLAGS", "DEVSWITCH_FLAGS (precision)"]
    backend = _row(out, "backend")
    assert backend[1] == "tensorflow" and backend[2].startswith("(Keras")  # the value and where Keras has it
    assert "what each setting does on tensorflow" in out
    from _devswitch.backends import detect_gpus

    device = _row(out, "device", after=MACHINE)
    if detect_gpus():
        assert device[1].startswith("gpu:") and "GPU(s)" in device[2]
    else:
        assert device[1:] == ["cpu", "(auto: no GPU found)"]
    xla = _row(out, "xla", after=MACHINE)[1]
    assert xla.startswith("auto:") and "jit_compile='auto'" in xla
    assert _row(out, "half", after=MACHINE)[1].split()[-1] in {"bf16", "fp16", "fp32"}


def test_info_reports_a_device_error_and_exits_non_zero(cli_env, capsys):
    """device=gpu with fallback=error: an error (exit 3) without a GPU, the GPU with one."""
    code = main(["info", "--device", "gpu", "--fallback", "error"])
    out = capsys.readouterr().out
    if _tensorflow_sees_a_gpu():
        assert code == 0 and _row(out, "device", after=MACHINE)[1] == "gpu:0" and "error:" not in out
    else:
        assert code == 3  # a DeviceError
        printed(out, prefix="  error: ", where="--device", named=["device=gpu", "TensorFlow"], fix="fallback: cpu")


def test_cli_prints_config_errors_without_traceback(cli_env, capsys):
    (cli_env / ".devswitchrc").write_text("devcie: gpu\n")
    assert main(["info"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("devswitch: error: ")
    printed(err, where=f"{cli_env / '.devswitchrc'}:1:1", named=["'devcie'"], fix="'device'")


def test_bad_cli_option_value_names_the_option(cli_env, capsys):
    assert main(["info", "--precision", "fp8"]) == 2
    printed(capsys.readouterr().err, where="--precision", named=["'fp8'", "'precision'"])


def test_init_writes_a_commented_file_and_never_overwrites(cli_env, capsys):
    assert main(["init"]) == 0
    target = cli_env / ".devswitchrc"
    assert target.read_text() == render_example()
    target.write_text("device: cpu\n")
    assert main(["init"]) == 2
    printed(capsys.readouterr().err, named=[str(target)], fix="--force")
    assert target.read_text() == "device: cpu\n"
    assert main(["init", "--force"]) == 0
    assert target.read_text() == render_example()


def test_init_user_writes_to_home(cli_env):
    assert main(["init", "--user"]) == 0
    assert (cli_env / "home" / ".devswitchrc").read_text() == render_example()
    assert not (cli_env / ".devswitchrc").exists()


@pytest.mark.subprocess
@pytest.mark.parametrize("command", [["devswitch"], [sys.executable, "-m", "devswitch"]],
                         ids=["console script", "python -m"])
def test_command_entry_points_do_not_switch_themselves(command, tmp_path):
    import shutil

    if command == ["devswitch"]:
        exe = shutil.which("devswitch") or str(__import__("pathlib").Path(sys.executable).parent / "devswitch")
        command = [exe]
    env = clean_environ(HOME=str(tmp_path), DEVSWITCH_PRECISION="fp8")
    proc = subprocess.run([*command, "info"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    # the bad value is reported once, by the command, not by an import-time activation
    assert proc.returncode == 2
    assert proc.stderr.count("invalid value 'fp8'") == 1 and "Traceback" not in proc.stderr


def test_info_shows_the_strategy_replicas_and_role(cli_env, capsys):
    assert main(["info", "--json", "--strategy", "mirrored", "--cpu-replicas", "2"]) == 0
    resolved = json.loads(capsys.readouterr().out)["resolved"]
    assert resolved["strategy"] == "mirrored" and resolved["replicas"] == 2
    assert resolved["replica_devices"] == ["/cpu:0", "/cpu:1"] and resolved["role"] == "single machine"
    argv = ["info", "--strategy", "multi_worker", "--workers", "a:1,b:1", "--worker-index", "1"]
    assert main([*argv, "--json"]) == 0
    resolved = json.loads(capsys.readouterr().out)["resolved"]
    assert main(argv) == 0
    strategy = _row(capsys.readouterr().out, "strategy", after=MACHINE)[1]  # the text shows what --json says
    assert strategy.startswith("multi_worker:") and f" | {resolved['role']}" in strategy
    assert f"{resolved['replicas']} replica(s) on {resolved['replica_devices'][0]}" in strategy
    assert main(["info", "--strategy", "multi_worker"]) == 2
    printed(capsys.readouterr().out, prefix="  error: ", where="--strategy", named=["strategy=multi_worker"])


@pytest.mark.parametrize("argv, command, expected", [
    pytest.param(["compare", "--out", "run", "mlp", "--devices", "cpu"], "compare",
                 {"out": "run", "target": "mlp", "devices": "cpu"}, id="compare --out run"),
    pytest.param(["compare", "mlp", "--out", "run"], "compare", {"out": "run", "target": "mlp"},
                 id="compare MODEL --out run"),
    pytest.param(["run", "script.py", "run", "--out", "x"], "run",
                 {"target": "script.py", "args": ["run", "--out", "x"]}, id="run script.py run"),
    pytest.param(["run", "--report", "run.json", "run.py", "run"], "run",
                 {"target": "run.py", "args": ["run"], "report": "run.json"}, id="run, with run everywhere"),
    pytest.param(["info", "--device", "cpu"], "info", {"device": "cpu"}, id="info"),
])
def test_the_sub_command_is_the_first_token_that_is_not_an_option(argv, command, expected):
    from _devswitch.cli import parse_args

    args = parse_args(argv)
    assert args.command == command
    assert {key: getattr(args, key) for key in expected} == expected


def test_compare_with_an_output_folder_named_run_reads_its_own_options(cli_env, capsys):
    # options after MODEL are compare's own: here a bad one, reported as compare reports it
    assert main(["compare", "--out", "run", "mlp", "--devices", "tpu"]) == 2
    err = capsys.readouterr().err
    printed(err, where="--devices", named=["'tpu'"])


def _named_run(root):
    """A script's argument named ``run`` (not the command)."""
    from conftest import SCRIPTS

    return {"run": Child(["-m", "devswitch", "run", "--report", "off", SCRIPTS / "argv_script.py", "run", "--exit",
                          "3"], timeout=240)}


named_run = children(_named_run)


@pytest.mark.subprocess
def test_compare_writes_to_a_folder_named_run(profile_compares):
    proc, folder = profile_compares("a")  # conftest: `compare --out run mlp --devices cpu ...`, shared with test_profiles
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((folder / "run" / "results.json").read_text())
    assert doc["options"]["out"] == "run" and doc["cells"][0]["status"] == "ok"


@pytest.mark.subprocess
def test_run_passes_an_argument_named_run_to_the_script(named_run):
    from conftest import SCRIPTS, result_line

    script = SCRIPTS / "argv_script.py"
    proc, _ = named_run("run")
    assert proc.returncode == 3, proc.stderr
    assert result_line(proc.stdout)["argv"] == [str(script), "run", "--exit", "3"]


def test_info_on_a_terminal_is_a_rich_table_with_the_same_content(cli_env, capsys):
    from _devswitch.cli.info import collect_info, print_info_rich
    from _devswitch.config import resolve
    from _devswitch.devices import Cpu, Inventory

    config = resolve({}, cli_env / "home", cli_env, {"precision": "bf16"})
    data, code = collect_info(config, Inventory(Cpu("Test CPU", 4)), {"devswitch": "0", "python": "3"})
    print_info_rich(data)
    out = capsys.readouterr().out
    assert code == 0 and "configuration (files read: none)" in out
    precision = _row(out, "precision")
    assert precision[1:3] == ["bf16", "explicit"] and precision[3].startswith("devswitch.configure")
    assert "on this machine, with tensorflow" in out


def test_info_at_80_columns_breaks_no_word(cli_env):
    """On an 80-column terminal and in 80 columns of text, every word of the configuration table shown is
    whole; a location that does not fit is dropped and named."""
    import io

    from rich.console import Console

    from _devswitch.cli.info import collect_info, config_table, print_info_rich, render_info
    from _devswitch.config import resolve
    from _devswitch.devices import Cpu, Inventory

    project = cli_env / "a_project_folder_with_a_rather_long_name_for_testing"
    project.mkdir()
    (project / ".devswitchrc").write_text("precision: half\nlog_level: error\n")
    config = resolve({"DEVSWITCH_DEVICE": "cpu"}, cli_env / "home", project, {"xla": "true"})
    data, _ = collect_info(config, Inventory(Cpu("Test CPU", 4)), {"devswitch": "0", "python": "3"})
    table = config_table(data)
    assert len(max(table.rows, key=lambda row: len(row[3]))[3]) > 60  # the long location would not fit
    console = Console(file=io.StringIO(), width=80, record=True, color_system=None)
    print_info_rich(data, console)
    for out, gap in ((console.export_text(), 3), (render_info(data, 80), 2)):
        fitted = table.fit(80, gap=gap)
        assert "location" not in fitted.headers and "not shown at this width: location" in out
        tokens = set(out.split())
        words = {w for cell in (*fitted.headers, *(c for row in fitted.rows for c in row)) for w in cell.split()}
        assert {"precision", "half", "project", "env", "var"} <= words <= tokens
