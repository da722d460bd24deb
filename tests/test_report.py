"""devswitch report: a result set shown again from its JSON alone, and two compared cell by cell."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import clean_environ
from devswitch.cli import main


def _compare(tmp_path, name):
    out = tmp_path / name
    done = subprocess.run([sys.executable, "-m", "devswitch", "compare", "mlp", "--devices", "cpu", "--precisions",
                           "fp32", "--batch-sizes", "8,64", "--iterations", "12", "--warmup", "2",
                           "--no-peak-probe", "--no-predict-baseline", "--out", str(out)],
                          env=clean_environ(HOME=str(tmp_path)), cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.subprocess
def test_report_shows_and_compares_real_result_sets(tmp_path, capsys):
    a, b = _compare(tmp_path, "a"), _compare(tmp_path, "b")
    assert main(["report", str(a)]) == 0
    shown = capsys.readouterr().out
    assert shown == (a / "results.md").read_text()  # the same table, from the JSON alone

    assert main(["report", str(a), str(b), "--fail-above", "60"]) == 0  # two real runs: no 60% regression
    table = capsys.readouterr().out
    assert table.count("| tensorflow cpu fp32 batch") == 2 and "B / A" in table

    slow = tmp_path / "slow"
    shutil.copytree(a, slow)  # A itself, doctored: two real runs here differ by more than 10% (noise)
    doc = json.loads((slow / "results.json").read_text())
    for record in doc["records"]:  # doctored: 30% slower, intervals scaled alike
        t = record["metrics"]["throughput"]
        t["value"] *= 0.7
        t["ci"] = [v * 0.7 for v in t["ci"]]
    (slow / "results.json").write_text(json.dumps(doc))
    assert main(["report", str(a / "results.json"), str(slow), "--fail-above", "10"]) == 1
    captured = capsys.readouterr()
    assert "FAIL: more than 10% slower" in captured.out and "2 cell(s) more than 10% slower" in captured.err
    assert main(["report", str(a), str(slow), "--fail-above", "40"]) == 0  # 30% slower is within a 40% gate
    capsys.readouterr()


@pytest.mark.parametrize("content, message", [
    ("not json", "is not JSON"),
    ("[]", "is not a devswitch compare result"),
    ('{"cells": []}', "is not a devswitch compare result"),
])
def test_report_refuses_what_is_not_a_result_set(tmp_path, capsys, content, message):
    path = tmp_path / "results.json"
    path.write_text(content)
    assert main(["report", str(path)]) == 2
    assert message in capsys.readouterr().err


# --- the recommendation and --save-profile ------------------------------------------------------------------

def _doc(rates, cis):
    from devswitch import compare

    cells = []
    for (precision, rate), ci in zip(rates.items(), cis):
        record = {"metrics": {"throughput": {"value": rate, "ci": list(ci), "ci_coverage": 0.95}}}
        cells.append(compare.Cell("cpu", precision, 128, "ok", precision, record))
    return {"_cells": cells, "model": {"unit": "img", "name": "m"},
            "options": {"batch_sizes": [128], "backends": ["tensorflow"], "target": "alexnet"}}


def test_the_recommendation_is_honest_about_overlapping_intervals():
    from devswitch.compare import recommendation_lines

    (clear,) = recommendation_lines(_doc({"fp32": 100.0, "half": 190.0}, [(95, 105), (180, 200)]))
    assert "fastest: cpu half (190.0 img/s, 1.90x the next, cpu fp32" in clear
    assert 'DEVSWITCH_FLAGS="device=cpu,precision=half" python train.py' in clear
    assert "devswitch run --device cpu --precision half train.py" in clear
    (tie,) = recommendation_lines(_doc({"fp32": 100.0, "half": 104.0}, [(95, 106), (98, 110)]))
    assert "no significant difference between cpu half (104.0 img/s) and cpu fp32" in tie


def test_save_profile_adds_to_a_users_file_and_keeps_everything_else(tmp_path):
    from devswitch import profiles
    from devswitch.config import resolve

    rc = tmp_path / ".devswitchrc"
    rc.write_text("# my settings\ndevice: cpu   # keep me\nprofiles:\n    old:\n        precision: fp16\n")
    profiles.add(rc, "fastest", {"device": "cpu", "precision": "half"}, "from compare")
    text = rc.read_text()
    assert text.startswith("# my settings\ndevice: cpu   # keep me\nprofiles:\n") and "    old:\n" in text
    cfg = resolve({"DEVSWITCH_PROFILE": "fastest"}, tmp_path / "home", tmp_path)
    assert (cfg.device, cfg.precision, cfg["precision"].source) == ("cpu", "half", "project file (profile fastest)")
    with pytest.raises(Exception, match="already defined"):
        profiles.add(rc, "fastest", {"device": "gpu"}, "again")
    fresh = tmp_path / "new" / ".devswitchrc"
    fresh.parent.mkdir()
    profiles.add(fresh, "p", {"backend": "jax", "device": "cpu", "precision": "fp32"}, "x")
    assert resolve({"DEVSWITCH_PROFILE": "p"}, tmp_path / "home", fresh.parent).backend == "jax"
    flow = tmp_path / "flow" / ".devswitchrc"
    flow.parent.mkdir()
    flow.write_text("profiles: {a: {device: cpu}}\n")
    with pytest.raises(Exception, match="flow style"):
        profiles.add(flow, "b", {"device": "cpu"}, "x")
    assert flow.read_text() == "profiles: {a: {device: cpu}}\n"


@pytest.mark.subprocess
def test_compare_saves_the_winner_as_a_profile_the_switch_then_runs(tmp_path):
    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    project.mkdir()
    done = subprocess.run([sys.executable, "-m", "devswitch", "compare", "mlp", "--devices", "cpu", "--precisions",
                           "fp32,fp16", "--batch-sizes", "32", "--iterations", "6", "--warmup", "1",
                           "--no-peak-probe", "--no-predict-baseline", "--out", str(tmp_path / "out"),
                           "--save-profile", "fastest"], env=clean_environ(HOME=str(home)), cwd=project,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Recommendation, batch 32:" in done.stdout and "saved profile 'fastest'" in done.stderr
    check = subprocess.run([sys.executable, "-m", "devswitch", "info", "--json"],
                           env=clean_environ(HOME=str(home), DEVSWITCH_PROFILE="fastest"), cwd=project,
                           capture_output=True, text=True, timeout=120)
    data = json.loads(check.stdout)
    assert data["config"]["precision"]["source"] == "project file (profile fastest)"
    assert data["config"]["precision"]["value"] in ("fp32", "fp16")


def test_report_shows_a_timing_report_file_of_both_formats(tmp_path, capsys):
    from devswitch.results import CallRecord, append_records

    record = CallRecord("predict", "tiny", "ok", 0.25, False, None, 0.25, 2, 64, 256.0, 8.0, device="CPU:0",
                        policy="mixed_bfloat16")
    report = tmp_path / "timing.jsonl"
    append_records(report, [record], plan={"backend": "jax", "device": "cpu", "precision": "bf16"},
                   environment={"keras": "3.15.1", "backend": "jax", "jax": "0.10.2"})
    old = tmp_path / "old.json"  # a devswitch 0.1 report: one JSON document
    old.write_text(json.dumps({"schema_version": 1, "plan": {"device": "cpu", "precision": "fp32"},
                               "records": [record.to_dict()]}))
    assert main(["report", str(report)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("run 1: backend=jax, device=cpu, precision=bf16; keras 3.15.1, jax 0.10.2")
    assert "predict" in out and "256 samples/s" in out
    assert main(["report", str(old)]) == 0
    assert "run 1: device=cpu, precision=fp32" in capsys.readouterr().out


def test_results_json_records_the_command_given_not_this_processs_argv(tmp_path):
    from devswitch import compare

    options = compare.Options("mlp", ("tensorflow",), ("cpu",), ("fp32",), (1,), command=("devswitch", "compare", "mlp"))
    doc = compare.document(options, [], [], 1.0, False)
    assert doc["command"] == ["devswitch", "compare", "mlp"] and "command" not in doc["options"]
    json.dumps({k: v for k, v in doc.items() if not k.startswith("_")})  # plain data only
