"""compare --vary KEY=V1,V2 and --maths: any setting that changes a measurement as one more axis of the matrix."""

from __future__ import annotations

import csv
import io
import json

import pytest

from _devswitch.cli import main, parse_args
from _devswitch.cli.compare import options_from_args
from _devswitch.compare.axes import REFUSED, VARIABLE

from conftest import Child, children, info_json
from errorparts import parts, printed

BASE = ["compare", "mlp", "--backends", "tensorflow", "--devices", "cpu", "--precisions", "fp32"]


def _options(*args: str):
    return options_from_args(parse_args([*BASE, *args]))


# --- options, refused before anything runs -----------------------------------------------------------------

def test_varied_values_are_checked_by_the_settings_own_parser_and_written_canonically():
    """Each value goes through the setting's parser: yes/no are true/false, threads N is N (INTRA:INTER kept)."""
    options = _options("--vary", "xla=yes,no", "--vary", "threads=1,2:2", "--maths", "ieee,BF16")
    assert options.vary == (("xla", ("true", "false")), ("threads", ("1", "2:2")), ("math", ("ieee", "bf16")))
    configs = options.configurations
    assert len(configs) == 8 and [c.label() for c in configs[:3]] == [
        "cpu fp32 xla=true threads=1 math=ieee", "cpu fp32 xla=true threads=1 math=bf16",
        "cpu fp32 xla=true threads=2:2 math=ieee"]  # the first --vary outermost
    assert options.baseline.settings == (("xla", "true"), ("threads", "1"), ("math", "ieee"))


def test_every_setting_is_either_variable_or_refused_with_a_reason():
    """A new setting cannot be forgotten: it is declared variable, or refused with why."""
    from _devswitch.compare.axes import REFUSED, VARIABLE
    from _devswitch.settings import NAMES

    assert set(VARIABLE) | set(REFUSED) == set(NAMES) and not set(VARIABLE) & set(REFUSED)


VARY_ONE_OF = ", ".join(VARIABLE)  # the hint of every refused or unknown key: what can vary


@pytest.mark.parametrize("args, where, named, fix", [
    *(pytest.param(["--vary", f"{key}={values}"], f"--vary {key}", [REFUSED[key]], VARY_ONE_OF, id=key)
      for key, values in [("report", "off,summary"), ("workers", "a:1,b:2"), ("worker_index", "0,1"),
                          ("device", "cpu,gpu"), ("precision", "fp32,bf16"), ("backend", "jax,torch"),
                          ("fallback", "cpu,error"), ("log_level", "quiet,debug"), ("profile", "a,b"),
                          ("batch_timing", "true,false")]),  # each refused with the reason declared for it
    pytest.param(["--vary", "xlaa=true,false"], "--vary 'xlaa'", ["'xla'"], VARY_ONE_OF, id="unknown key"),
    pytest.param(["--vary", "xla=true,maybe"], "--vary xla", ["'maybe'"], "auto, true, false", id="bad value"),
    pytest.param(["--vary", "threads=2,4096"], "--vary threads", ["'4096'", "1024"], "threads",
                 id="too many threads"),
    pytest.param(["--maths", "ieee,fp64"], "--maths", ["'fp64'"], "auto, ieee, tf32, bf16", id="bad math"),
    pytest.param(["--vary", "xla=true,yes"], "--vary xla", ["'xla=true,yes'", "true"], None, id="one value twice"),
    pytest.param(["--vary", "xla=true,false", "--vary", "xla=auto"], "--vary xla", [], "--vary xla=A,B,C",
                 id="key twice"),
    pytest.param(["--vary", "xla=true,,false"], "--vary xla", ["'xla=true,,false'"], None, id="empty value"),
    pytest.param(["--vary", "xla"], "--vary 'xla'", ["KEY=VALUE1,VALUE2"], "--vary xla=true,false", id="no values"),
    pytest.param(["--maths", "ieee,bf16", "--vary", "math=auto,ieee"], None, ["--maths", "--vary math=..."], None,
                 id="maths and vary math"),
    pytest.param(["--vary", "xla=true,false", "--baseline", "cpu/fp32/xla=auto"], "--baseline cpu/fp32/xla=auto",
                 ["xla=auto", "(true,false)"], "--baseline cpu/fp32/xla=true", id="baseline value not varied"),
    pytest.param(["--vary", "xla=true,false", "--baseline", "cpu/fp32/threads=1"], "--baseline cpu/fp32/threads=1",
                 ["threads"], "--baseline", id="baseline key not varied"),
    pytest.param(["--vary", "threads=1,2,3,4,5,6", "--vary", "cpu_replicas=0,1,2,3,4,5"], None,
                 ["36 configurations", "threads 6", "cpu_replicas 6", "72 cells", "32 configurations"], "--yes",
                 id="large matrix without --yes"),
])
def test_what_cannot_vary_is_refused_with_the_reason_before_anything_runs(args, where, named, fix, capsys, tmp_path,
                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*BASE, *args]) == 2
    printed(capsys.readouterr().err, where=where, named=named, fix=fix)
    assert not (tmp_path / "devswitch-results").exists()


def test_a_bad_value_names_what_the_setting_takes(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*BASE, "--vary", "strategy=none,mirored"]) == 2
    shown = printed(capsys.readouterr().err, where="--vary strategy", named=["'mirored'"], fix="'mirrored'")
    assert "none, mirrored, multi_worker" in shown.hint  # what the setting takes


def test_a_large_matrix_runs_with_yes_and_the_baseline_may_name_a_varied_value():
    options = _options("--vary", "threads=1,2,3,4,5,6", "--vary", "cpu_replicas=0,1,2,3,4,5", "--yes",
                       "--baseline", "cpu/fp32/cpu-replicas=3")
    assert len(options.configurations) == 36
    assert options.baseline.settings == (("threads", "1"), ("cpu_replicas", "3"))  # threads: its first value


# --- the key, the files and the recommendation, with stand-in cells ----------------------------------------

def _results(rates: dict, math_in_force: dict | None = None):
    """A result set of MLP cells at batch 8 keyed by (xla, threads) -> throughput."""
    from _devswitch.compare import Cell, ResultSet
    from _devswitch.compare.resultset import Model

    cells = []
    for (xla, threads), rate in rates.items():
        record = {"metrics": {"throughput": {"value": rate, "ci": [rate * 0.99, rate * 1.01], "ci_coverage": 0.95}},
                  "math": (math_in_force or {}).get(xla, "auto (ieee)")}
        cells.append(Cell.of(("tensorflow", "cpu", "fp32", (("xla", xla), ("threads", threads))), 8, "ok", "fp32",
                             record))
    return ResultSet(options={"batch_sizes": [8], "backends": ["tensorflow"], "target": "mlp",
                              "baseline": "tensorflow cpu fp32 xla=true threads=1",
                              "vary": {"xla": ["true", "false"], "threads": ["1", "2"]}},
                     model=Model("mlp", "m", unit="samples"), cells=tuple(cells))


RATES = {("true", "1"): 100.0, ("true", "2"): 150.0, ("false", "1"): 90.0, ("false", "2"): 300.0}


def test_a_cell_is_keyed_by_its_varied_settings_and_the_old_three_part_key_still_works():
    from _devswitch.compare import Cell, Key

    results = _results(RATES)
    assert results.cell(("tensorflow", "cpu", "fp32", (("xla", "false"), ("threads", "2"))), 8).metric(
        "throughput") == 300.0
    assert results.cell(("tensorflow", "cpu", "fp32"), 8) is None  # nothing unvaried in this set
    assert Key("tensorflow", "cpu", "fp32", 8) == Cell("tensorflow", "cpu", "fp32", 8, "ok").key
    assert results.speedup(results.cells[3]) == pytest.approx(3.0)  # over the baseline xla=true threads=1
    assert results.varied == ("xla", "threads")


def test_results_files_carry_the_varied_settings_and_read_back(tmp_path):
    from _devswitch.compare import read
    from _devswitch.render.compare import render_csv, render_markdown

    results = _results(RATES)
    (tmp_path / "results.json").write_text(results.dumps())
    back = read(tmp_path)
    assert back.by_key().keys() == results.by_key().keys() and back.baseline == results.baseline
    assert json.loads(results.dumps())["cells"][3]["settings"] == {"xla": "false", "threads": "2"}
    rows = list(csv.DictReader(io.StringIO(render_csv(back))))
    assert list(rows[0])[:5] == ["backend", "device", "precision", "xla", "threads"]
    assert [(r["xla"], r["threads"]) for r in rows] == list(RATES)
    table = render_markdown(back)
    assert "| batch 8 | cpu fp32 xla=true threads=1 | cpu fp32 xla=true threads=2 |" in table
    assert "speed-up vs cpu fp32 xla=true threads=1" in table


def test_the_recommended_switch_carries_every_varied_value_of_the_winner(tmp_path, monkeypatch):
    from _devswitch.cli.compare import save_winner
    from _devswitch.compare import recommendation_lines
    from _devswitch.config import resolve

    results = _results(RATES)
    (line,) = recommendation_lines(results)
    assert 'DEVSWITCH_FLAGS="device=cpu,precision=fp32,xla=false,threads=2"' in line
    assert "devswitch run --device cpu --precision fp32 --xla false --threads 2 train.py" in line
    assert save_winner(results, "fast", tmp_path / ".devswitchrc")
    config = resolve({"DEVSWITCH_PROFILE": "fast"}, tmp_path / "home", tmp_path)
    assert (config.xla, config.threads.intra, config.device) == (False, 2, "cpu")


@pytest.mark.parametrize("settings, in_force, column", [
    pytest.param((("math", "bf16"),), "ieee", "cpu fp32 math=bf16 (ieee in force)", id="bf16 without effect"),
    pytest.param((("math", "bf16"),), "bf16", "cpu fp32 math=bf16", id="bf16 in force"),
    pytest.param((("math", "auto"),), "auto (tf32)", "cpu fp32 math=auto (tf32 in force)", id="auto"),
    pytest.param((), "tf32", "cpu fp32 (tf32 math)", id="math not varied"),
])
def test_a_math_column_says_when_another_mode_was_in_force(settings, in_force, column):
    """The column names the mode asked for, and the record's mode in force when it is another."""
    from _devswitch.compare import Cell

    record = {"metrics": {"throughput": {"value": 1.0}}, "math": in_force}
    assert Cell.of(("torch", "cpu", "fp32", settings), 8, "ok", "fp32", record).column() == column


def _doc(mutate):
    doc = json.loads(_results(RATES).dumps())
    mutate(doc)
    return json.dumps(doc).encode()


@pytest.mark.parametrize("mutate, field", [
    pytest.param(lambda d: d["cells"][0].update(settings={"report": "off"}), "cells[0].settings.report",
                 id="a setting compare does not vary"),
    pytest.param(lambda d: d["cells"][0]["settings"].update(xla="maybe"), "cells[0].settings.xla", id="bad value"),
    pytest.param(lambda d: d["cells"][0]["settings"].update(xla=True), "cells[0].settings.xla", id="not a string"),
    pytest.param(lambda d: d["cells"][0]["settings"].update(xla="yes"), "cells[0].settings.xla",
                 id="not as devswitch writes it"),
    pytest.param(lambda d: d["cells"][1].update(settings={"xla": "true"}), "cells[1].settings", id="other keys"),
    pytest.param(lambda d: d["cells"][0].update(settings=["xla", "true"]), "cells[0].settings", id="not an object"),
    pytest.param(lambda d: d["cells"][0].update(settings={f"k{i}": "1" for i in range(17)}), "cells[0].settings",
                 id="too many"),
    pytest.param(lambda d: d["options"].update(baseline="tensorflow cpu fp32 xla"), "options.baseline",
                 id="baseline pair without value"),
    pytest.param(lambda d: d["options"].update(vary={"xla": "true"}), "options.vary.xla", id="vary not a list"),
])
def test_malformed_varied_settings_in_results_json_are_named(mutate, field):
    from _devswitch.compare import ResultFileError
    from _devswitch.compare.resultfile import parse

    with pytest.raises(ResultFileError) as info:
        parse(_doc(mutate), "results.json")
    error = parts(info, ResultFileError, fix="devswitch compare")
    assert error.message.startswith(f"results.json: {field}: "), error.message  # the file and the field, first


# --- end to end: real workers on the MLP --------------------------------------------------------------------

TINY = ["--devices", "cpu", "--precisions", "fp32", "--batch-sizes", "4", "--iterations", "2", "--warmup", "1",
        "--no-peak-probe", "--no-predict-baseline", "--accuracy-samples", "0", "--out", "out"]


def _vary_compares(root) -> dict[str, Child]:
    """Two compares (queued with the session's children): TensorFlow with xla x threads (4 columns, profile
    saved), PyTorch with --maths."""
    return {
        "tf": Child(["-m", "devswitch", "compare", "mlp", "--backends", "tensorflow", *TINY, "--vary",
                     "xla=true,false", "--vary", "threads=1,2", "--save-profile", "fast", "--save-profile-anyway"]),
        "torch": Child(["-m", "devswitch", "compare", "mlp", "--backends", "torch", *TINY, "--maths", "ieee,bf16"]),
    }


vary_compares = children(_vary_compares)


@pytest.fixture(scope="module")
def runs(vary_compares):
    return {name: vary_compares(name) for name in ("tf", "torch")}


@pytest.mark.subprocess
def test_xla_and_threads_are_four_columns_each_applied_in_its_worker(runs):
    proc, folder = runs["tf"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((folder / "out" / "results.json").read_text())
    assert doc["options"]["vary"] == {"xla": ["true", "false"], "threads": ["1", "2"]}
    assert [c["settings"] for c in doc["cells"]] == [{"xla": x, "threads": t} for x in ("true", "false")
                                                     for t in ("1", "2")]
    for cell in doc["cells"]:  # what each worker resolved and applied, not only what compare asked
        assert cell["status"] == "ok"
        applied = {k: v["value"] for k, v in cell["record"]["settings"].items()}
        assert applied == cell["settings"]
        assert {v["source"] for v in cell["record"]["settings"].values()} == {"explicit"}
    table = (folder / "out" / "results.md").read_text()
    assert "| batch 4 | cpu fp32 xla=true threads=1 | cpu fp32 xla=true threads=2 | cpu fp32 xla=false threads=1 |" \
        in table
    assert "4 configurations (1 device x 1 precision x xla 2 x threads 2) x 1 batch size (4) = 4 cells" in proc.stderr
    assert "xla,threads" in (folder / "out" / "results.csv").read_text().splitlines()[0]


@pytest.mark.subprocess
def test_the_saved_profile_carries_the_varied_values_and_devswitch_info_reads_them_back(runs, monkeypatch, capsys):
    proc, folder = runs["tf"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    winner = next(line for line in proc.stdout.splitlines() if line.startswith("Recommendation, batch 4"))
    assert ",xla=" in winner and ",threads=" in winner
    config = info_json(folder, "fast", monkeypatch, capsys)["config"]
    saved = (folder / ".devswitchrc").read_text()
    for key in ("xla", "threads"):
        assert config[key]["source"] == "project file (profile fast)" and f"    {key}: " in saved
    # --save-profile-anyway saves the fastest measured, decided or not: the line names it, as the switch it
    # recommends (xla=...,threads=...) or, when a tie keeps the baseline, as the fastest measured (xla=... threads=...)
    xla, threads = str(config["xla"]["value"]).lower(), config["threads"]["value"]["intra"]
    assert f"xla={xla},threads={threads}" in winner or f"fastest measured, cpu fp32 xla={xla} threads={threads}" in winner


@pytest.mark.subprocess
def test_maths_puts_each_math_mode_on_the_table_with_the_mode_in_force(runs):
    """On this CPU without AMX, PyTorch's bf16 math has no effect: the record says ieee was in force, and so does
    the column; on an AMX CPU it is bf16."""
    proc, folder = runs["torch"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((folder / "out" / "results.json").read_text())
    ieee, bf16 = doc["cells"]
    assert (ieee["settings"], bf16["settings"]) == ({"math": "ieee"}, {"math": "bf16"})
    assert ieee["record"]["math"] == "ieee" and bf16["record"]["math"] in ("bf16", "ieee")
    table = (folder / "out" / "results.md").read_text()
    label = "cpu fp32 math=bf16" + (" (ieee in force)" if bf16["record"]["math"] == "ieee" else "")
    assert f"| batch 4 | cpu fp32 math=ieee | {label} |" in table


def test_memory_growth_on_a_gpu_with_rounds_is_refused_before_anything_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "mlp", "--devices", "cpu,gpu", "--precisions", "fp32", "--vary",
                 "memory_growth=true,false", "--out", "out"]) == 2
    printed(capsys.readouterr().err, named=["--vary memory_growth", "GPU", "--rounds 1"])
    assert not (tmp_path / "out").exists()
