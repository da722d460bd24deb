"""compare refuses up front what it would otherwise get wrong later: a baseline key given twice, multi_worker
without its cluster, a -m MODULE that is not there; and a script table says how many calls it did not keep."""

from __future__ import annotations

import time

import pytest
from errorparts import printed

from _devswitch.cli import main


@pytest.fixture
def folder(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    for var in ("DEVSWITCH_WORKERS", "TF_CONFIG", "DEVSWITCH_STRATEGY"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


TINY = ["mlp", "--devices", "cpu", "--precisions", "fp32", "--out", "out"]


def test_a_baseline_key_given_twice_is_refused(folder, capsys):
    """--baseline cpu/fp32/threads=2/threads=1 took the last value silently."""
    assert main(["compare", *TINY, "--vary", "threads=1,2", "--baseline", "cpu/fp32/threads=2/threads=1"]) == 2
    printed(capsys.readouterr().err, where="--baseline cpu/fp32/threads=2/threads=1",
            named=["threads=2", "threads=1"], fix="threads")
    assert not (folder / "out").exists()


def test_multi_worker_without_its_cluster_is_refused_before_anything_runs(folder, capsys):
    assert main(["compare", *TINY, "--vary", "strategy=none,multi_worker"]) == 2
    shown = printed(capsys.readouterr().err, where="--vary strategy=multi_worker", named=["multi_worker"])
    assert "DEVSWITCH_WORKERS" in f"{shown.message} {shown.hint}" and not (folder / "out").exists()


def test_multi_worker_with_workers_set_passes_the_check(folder, monkeypatch):
    from _devswitch.cli import parse_args
    from _devswitch.cli.compare import options_from_args

    monkeypatch.setenv("DEVSWITCH_WORKERS", "localhost:12345,localhost:12346")
    args = parse_args(["compare", *TINY, "--vary", "strategy=none,multi_worker", "--backends", "tensorflow"])
    assert dict(options_from_args(args).vary)["strategy"] == ("none", "multi_worker")


def test_a_missing_module_is_refused_before_any_framework_starts(folder, capsys):
    """find_spec in a child with this interpreter, folder and environment: a fraction of a second, exit 2,
    no output folder."""
    (folder / "pkg").mkdir()
    (folder / "pkg" / "__init__.py").write_text("")
    (folder / "pkg" / "train.py").write_text("print('hi')\n")
    started = time.monotonic()
    assert main(["compare", "-m", "pkg.nope", "--devices", "cpu", "--precisions", "fp32", "--out", "out"]) == 2
    assert time.monotonic() - started < 30
    printed(capsys.readouterr().err, where="-m pkg.nope")
    assert main(["compare", "-m", "nopkg.train", "--devices", "cpu", "--precisions", "fp32", "--out", "out"]) == 2
    printed(capsys.readouterr().err, where="-m nopkg.train", named=["'nopkg'"])  # Python's own reason names it
    assert not (folder / "out").exists()
    from _devswitch.cli.compare_script import check_module

    check_module("pkg.train")  # found: no error


def test_the_script_table_says_how_many_calls_were_not_kept():
    from _devswitch.compare import Cell, ResultSet
    from _devswitch.compare.resultset import Model
    from _devswitch.compare.scriptrecord import MAX_CALLS, build
    from _devswitch.render.compare import render_markdown

    run = {
        "round": 0,
        "start_s": 0.0,
        "wall_s": 1.0,
        "startup_s": 0.5,
        "process_s": 2.0,
        "exit_code": 0,
        "calls": [{"kind": "fit", "status": "ok"}] * (MAX_CALLS + 234),
    }
    record = build([run], {}, {}, {})
    cell = Cell.of(("tensorflow", "cpu", "fp32", ()), 1, "ok", "fp32", record)
    results = ResultSet(
        options={
            "batch_sizes": [1],
            "backends": ["tensorflow"],
            "target": "train.py",
            "kind": "script",
            "baseline": "tensorflow cpu fp32",
        },
        model=Model("train.py", "train.py", unit="runs"),
        cells=(cell,),
    )
    assert "cpu fp32: 234 timed calls not kept (a run keeps its first 1,000)" in render_markdown(results)


# --- one compare command, two sources of columns: the parser's groups say which option is whose ----------------

def _group(name: str):
    """The destinations of one argument group of the compare parser."""
    import argparse

    from _devswitch.cli.compare import compare_parser

    parser = compare_parser(argparse.ArgumentParser().add_subparsers())
    (group,) = [g for g in parser._action_groups if g.title == name]
    return {action.dest for action in group._group_actions}


def test_the_parser_groups_each_option_by_the_source_it_belongs_to():
    """The factory group is what --script refuses and holds every factory default; the script group its own."""
    from _devswitch.cli.compare_options import FACTORY_DEFAULTS, SCRIPT_CAPS

    assert _group("factory") == {"target", *FACTORY_DEFAULTS}
    assert _group("script") == {"script", "script_module", *SCRIPT_CAPS}
    for name in ("columns", "measuring", "output", "recommendation"):
        assert _group(name), name


@pytest.mark.parametrize("option", [
    pytest.param(["--iterations", "20"], id="--iterations at its default"),
    pytest.param(["--mode", "inference"], id="--mode at its default"),
    pytest.param(["--accuracy-samples", "32"], id="--accuracy-samples at its default"),
    pytest.param(["--no-peak-probe"], id="a flag"),
])
def test_a_factory_option_given_with_a_script_is_refused_even_at_its_default_value(folder, capsys, option):
    """FACTORY_ONLY compared values with a second copy of the defaults: --iterations 20 slipped through."""
    (folder / "train.py").write_text("print('ran')\n")
    code = main(["compare", "--script", "train.py", "--devices", "cpu", "--precisions", "fp32", "--out", "out",
                 *option])
    assert code == 2
    printed(capsys.readouterr().err, where=option[0])
    assert not (folder / "out").exists()


def test_a_script_compare_gets_the_resolved_defaults_of_what_was_not_given(folder):
    from _devswitch.cli import parse_args
    from _devswitch.cli.compare_script import script_job

    (folder / "train.py").write_text("print('ran')\n")
    job = script_job(parse_args(["compare", "--script", "train.py", "--devices", "cpu", "--precisions", "fp32",
                                 "--backends", "tensorflow", "--max-steps", "3"]))
    assert (job.options.target, job.options.batch_sizes, job.options.rounds) == ("train.py", (1,), 1)
    assert (job.options.accuracy_samples, job.options.iterations) == (0, 20)
    assert job.caps == {"max_epochs": None, "max_steps": 3}


def test_a_factory_compare_resolves_its_defaults_after_parsing(folder):
    from _devswitch.cli import parse_args
    from _devswitch.cli.compare import options_from_args

    args = parse_args(["compare", *TINY, "--backends", "tensorflow"])
    assert args.iterations is None and args.batch_sizes is None  # not given: told apart from a default
    options = options_from_args(args)
    assert (options.iterations, options.batch_sizes, options.warmup, options.rounds) == (20, (1, 128), 5, 6)
    assert (options.mode, options.accuracy_samples, options.predict_baseline) == ("inference", 32, True)
