"""compare refuses up front what it would otherwise get wrong later: a baseline key given twice, multi_worker
without its cluster, a -m MODULE that is not there; and a script table says how many calls it did not keep."""

from __future__ import annotations

import time

import pytest

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
    err = capsys.readouterr().err
    assert "--baseline cpu/fp32/threads=2/threads=1: threads is given twice (threads=2, threads=1)" in err
    assert "hint: name threads once" in err and not (folder / "out").exists()


def test_multi_worker_without_its_cluster_is_refused_before_anything_runs(folder, capsys):
    assert main(["compare", *TINY, "--vary", "strategy=none,multi_worker"]) == 2
    err = capsys.readouterr().err
    assert "--vary strategy=multi_worker: a multi_worker column needs its cluster" in err
    assert "DEVSWITCH_WORKERS" in err and not (folder / "out").exists()


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
    err = capsys.readouterr().err
    assert "-m pkg.nope: no such module here" in err and "nothing was run" in err
    assert main(["compare", "-m", "nopkg.train", "--devices", "cpu", "--precisions", "fp32", "--out", "out"]) == 2
    assert "No module named 'nopkg'" in capsys.readouterr().err
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
