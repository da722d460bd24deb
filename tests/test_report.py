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
    shutil.copytree(b, slow)
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
