"""The interval printed beside a median is a confidence interval of that median, and the chart does not
exaggerate: linear axis from zero, speed-ups written on the bars (read back from the matplotlib figure)."""

from __future__ import annotations

import random

import pytest

from _devswitch import compare
from _devswitch.statistics import Summary, median, median_ci


@pytest.mark.parametrize("n, ranks, coverage", [(20, (6, 15), 0.9586), (100, (40, 61), 0.9648), (6, (1, 6), 0.9688)])
def test_median_ci_uses_the_textbook_order_statistics(n, ranks, coverage):
    values = [float(v) for v in range(1, n + 1)]
    low, high, covers = median_ci(values)
    assert (low, high) == ranks and covers == pytest.approx(coverage, abs=1e-4)


def test_with_fewer_than_six_samples_the_interval_is_the_range_and_says_how_sure():
    assert median_ci([3.0, 1.0, 2.0, 5.0, 4.0]) == (1.0, 5.0, pytest.approx(0.9375))


@pytest.mark.parametrize("draw", [lambda r: r.lognormvariate(0, 1), lambda r: r.expovariate(1.0),
                                  lambda r: r.uniform(0, 1)], ids=["lognormal", "exponential", "uniform"])
def test_coverage_on_synthetic_data_is_at_least_the_nominal_95_percent(draw):
    rng = random.Random(1)
    # the true median of each distribution, by a large sample (tight enough for a coverage check)
    truth = median([draw(rng) for _ in range(200_001)])
    trials, hits = 2000, 0
    for _ in range(trials):
        low, high, _ = median_ci([draw(rng) for _ in range(20)])
        hits += low <= truth <= high
    assert 0.94 <= hits / trials <= 0.99, hits / trials  # nominal 95.9% for n = 20


def test_a_summary_carries_the_interval_of_its_median():
    summary = Summary.of([0.010, 0.011, 0.009, 0.012, 0.010, 0.013, 0.010, 0.011], batch=4)
    low, high = summary.samples_per_s_ci
    assert low <= summary.samples_per_s <= high and summary.ci_coverage > 0.9


def _doc(rates_a, rates_b, unit="img", columns=None, **extra):
    from _devswitch.compare.resultset import Model

    cells = []
    configs = columns or [("cpu", rates_a), ("gpu", rates_b)]
    for device, rates in configs:
        for batch, rate in zip((1, 128), rates):
            record = {"metrics": {"throughput": {"value": rate, "ci": [rate * 0.9, rate * 1.1], "ci_coverage": 0.96},
                                  "power": {"value": None}}}
            cells.append(compare.Cell("tensorflow", device, "fp32", batch, "ok", "fp32", record))
    return compare.ResultSet(options={"batch_sizes": [1, 128], "mode": "inference",
                                      "baseline": "tensorflow cpu fp32", "backends": ["tensorflow"],
                                      "target": "alexnet"},
                             model=Model("alexnet", "alexnet", unit=unit), cells=tuple(cells), **extra)


def build_figure(doc):
    from _devswitch.render.chart import build_figure as build

    return build(doc)


def test_a_chart_of_many_columns_keeps_a_sane_size_and_gives_each_column_its_own_look():
    """18 columns: no 4906 px wide picture, and no two columns share a colour (tab10 repeats after 10)."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    doc = _doc(None, None, columns=[(f"gpu:{i}", (10.0 + i, 20.0 + i)) for i in range(25)])
    fig = build_figure(doc)
    width, height = fig.get_size_inches() * 110  # the dpi results.png is saved at
    assert width <= 14 * 110 + 1 and height < 1000
    handles = fig.legends[0].legend_handles
    looks = {(tuple(h.get_facecolor()), h.get_hatch()) for h in handles}
    assert len(handles) == 25 and len(looks) == 25
    plt.close(fig)


def test_the_chart_starts_at_zero_on_a_linear_axis_with_the_speed_ups_on_the_bars():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    fig = build_figure(_doc((50.0, 100.0), (80.0, 158.0)))
    ax = fig.axes[0]
    assert ax.get_yscale() == "linear" and ax.get_ylim()[0] == 0
    texts = [t.get_text() for t in ax.texts]
    assert "1.58x" in texts and "1.60x" in texts and "1.00x" in texts
    assert "alexnet, inference" in fig._suptitle.get_text() and "95% CI of the median" in fig._suptitle.get_text()
    plt.close(fig)


def test_the_chart_goes_log_only_past_a_hundredfold_span_and_says_so():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    fig = build_figure(_doc((5.0, 100.0), (8.0, 1500.0)))
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and "(log scale)" in ax.get_ylabel()
    plt.close(fig)


def test_the_table_prints_the_interval_not_a_standard_error():
    from _devswitch.render.compare import render_markdown

    table = render_markdown(_doc((50.0, 100.0), (80.0, 158.0)))
    assert "| img/s | 50.0 [45.0, 55.0] | 80.0 [72.0, 88.0] |" in table and "±" not in table


def test_the_report_page_is_self_contained(tmp_path):
    """results.html: the tables, the plot embedded, the recommendation, the environment and configuration;
    nothing it references lies outside the file (no network request of any kind)."""
    import re

    from _devswitch.render.compare import render_html

    doc = _doc((50.0, 100.0), (80.0, 158.0), environment={"keras": "3.15.1", "cpu": "Test <CPU>"},
               command=("devswitch", "compare"),
               config={"precision": {"value": "fp32", "source": "explicit", "location": "--precision"}})
    page = render_html(doc, b"\x89PNG fake")
    assert page.startswith("<!DOCTYPE html>") and page.count("<table") == 4  # 2 batches, environment, config
    assert "data:image/png;base64," in page and "Recommendation, batch 128" in page and "Test &lt;CPU&gt;" in page
    assert "--precision" in page
    assert not re.search(r"https?://|<link|<script|@import|url\(", page)
    assert all(src.startswith("data:") for src in re.findall(r"src='([^']*)'", page))


def test_the_summary_fits_an_80_column_terminal():
    """On a terminal the 10-column summary is a rich table that wraps cells, not every line."""
    import io

    from rich.console import Console

    from _devswitch.render.calls import calls_table, print_calls
    from _devswitch.render.terminal import Fitted
    from _devswitch.results import CallRecord

    records = [CallRecord("fit", "a_model_with_a_rather_long_name", "ok", 12.5, True, 3.2, 9.3, 100, 3200,
                          12345.6, 100.0, device="CPU:0", policy="mixed_bfloat16", applied_policy="float32")]
    out = io.StringIO()
    Console(file=out, width=80, force_terminal=True, color_system=None).print(Fitted(calls_table(records)))
    lines = out.getvalue().splitlines()
    assert lines and max(len(line) for line in lines) <= 80
    assert "fit" in out.getvalue() and "policy" in out.getvalue()
    plain = io.StringIO()  # not a terminal: the plain text table, as in logs and CI
    print_calls(records, plain)
    assert plain.getvalue().startswith("devswitch: timed Keras calls\n#  call")


def test_a_model_name_with_dollars_is_drawn_as_text_not_mathematics(tmp_path):
    """matplotlib reads "$...$" as math text: a name like net_$\\badcmd$ must neither fail nor lose results."""
    pytest.importorskip("matplotlib")
    from dataclasses import replace

    from _devswitch.compare.resultset import Model
    from _devswitch.render.outputs import write_outputs

    doc = replace(_doc((50.0, 100.0), (80.0, 158.0)), model=Model("x", r"net_$\badcmd$_v2"))
    assert write_outputs(doc, tmp_path) == []
    assert (tmp_path / "results.png").stat().st_size > 1000
