"""The bar chart of a compare result set: linear from zero (log only past a 100x span, labelled), whiskers
for the interval of the median, the speed-up on each bar, a colour (and past 20, a hatching) per column."""

from __future__ import annotations

import io
from pathlib import Path

from ..compare.options import batch_label
from ..compare.recommend import coverage_words
from ..compare.resultset import ResultSet
from ..memory import format_size
from .cells import baseline_label, memory_ratio

MAX_WIDTH_IN = 14.0
HATCHES = ("", "//", "..", "xx", "\\\\", "oo", "++", "--")


def style(j: int) -> dict:
    """Column ``j``'s look: 20 distinct colours (tab20's ten dark ones first, then their light pairs), then the
    same colours hatched, so no two columns share a look."""
    import matplotlib

    n = j % 20
    colour = matplotlib.colormaps["tab20"](2 * n if n < 10 else 2 * (n - 10) + 1)
    hatch = HATCHES[(j // 20) % len(HATCHES)]
    return {"facecolor": colour, "hatch": hatch, "edgecolor": "0.25" if hatch else colour}


def build_figure(results: ResultSet):
    """The chart: a bar per configuration and batch size, throughput (and per watt where measured)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    unit = results.model.unit
    batches = results.batch_sizes
    configs = results.configs
    columns = [
        results.column(results.cell(c, batches[0]) or next(x for x in results.cells if x.config == c)) for c in configs
    ]
    any_watts = any(c.metric("power") for c in results.cells if c.ok)
    panels = 2 if any_watts else 1
    width = min(MAX_WIDTH_IN, 4 + panels * (1.2 + 0.35 * len(columns) * len(batches)))
    legend_rows = -(-len(columns) // 4)
    height = 4.6 + 0.2 * legend_rows
    fig, axes = plt.subplots(1, panels, figsize=(width, height), squeeze=False)
    for panel, (metric_name, label) in enumerate(
        [("throughput", f"{unit}/s"), ("samples_per_watt", f"{unit}/s per W")][:panels]
    ):
        _draw_panel(axes[0][panel], results, metric_name, label, len(columns))
    import textwrap

    heading = _heading(results, len(columns), any_watts)
    fig.suptitle(
        "\n".join(textwrap.fill(line, int(width * 13)) for line in heading.split("\n")), fontsize=10, parse_math=False
    )  # a model's name is text: "$...$" in it is not mathematics
    fig.legend(
        handles=[Patch(label=column.replace("$", r"\$"), **style(j)) for j, column in enumerate(columns)],
        fontsize=8,
        loc="lower center",
        ncol=min(4, len(columns)),
        frameon=False,
    )
    fig.tight_layout(rect=(0, (0.2 * legend_rows + 0.15) / height, 1, 1))
    return fig


def _draw_panel(ax, results: ResultSet, metric_name: str, label: str, n_columns: int) -> None:
    """One panel: every configuration's bars of ``metric_name``, the batch sizes on the x axis."""
    batches = results.batch_sizes
    bar = 0.8 / max(1, n_columns)
    for j, config in enumerate(results.configs):
        _draw_bars(ax, results, config, j, metric_name, bar, n_columns)
    ax.set_xlim(-bar, len(batches) - 1 + bar * n_columns)
    ax.set_xticks([i + bar * (n_columns - 1) / 2 for i in range(len(batches))])
    ax.set_xticklabels([batch_label(b) for b in batches])
    values = [v for v in (c.metric(metric_name) for c in results.cells if c.ok) if v]
    if values and max(values) / min(values) > 100:  # only then would a linear axis hide the small bars
        ax.set_yscale("log")
        label += " (log scale)"
    else:
        ax.set_ylim(bottom=0)  # a bar's height is its value: the axis starts at zero
    ax.set_ylabel(label)
    ax.grid(axis="y", alpha=0.3)


def _draw_bars(ax, results: ResultSet, config, j: int, metric_name: str, bar: float, n_columns: int) -> None:
    """The bars of configuration ``j``, one per batch size, or a word at the axis' foot saying why there is none."""
    xs, ys, labels = [], [], []
    errs: list[list[float]] = [[], []]  # below and above each bar
    for i, batch in enumerate(results.batch_sizes):
        cell = results.cell(config, batch)
        value = cell.metric(metric_name) if cell is not None and cell.ok else None
        if cell is None or not value:  # say why there is no bar, at the foot of the axis
            why = cell.status.split(":")[0] if cell is not None and cell.status != "ok" else "not measured"
            ax.text(
                i + j * bar,
                0.02,
                why,
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="bottom",
                fontsize=7,
                rotation=90,
                color="0.4",
            )
            continue
        xs.append(i + j * bar)
        ys.append(value)
        ci = cell.interval if metric_name == "throughput" else None
        errs[0].append(max(0.0, value - ci.low) if ci else 0.0)  # the interval is asymmetric
        errs[1].append(max(0.0, ci.high - value) if ci else 0.0)
        throughput = metric_name == "throughput"
        labels.append(_speedup_label(results, cell) + _memory_label(results, cell) if throughput else "")
    if xs:
        bars = ax.bar(xs, ys, bar, yerr=errs if metric_name == "throughput" else None, capsize=2, **style(j))
        if n_columns <= 12:  # beyond, the labels would overlap: the tables carry them
            ax.bar_label(bars, labels=labels, fontsize=7, padding=2)


def _speedup_label(results: ResultSet, cell) -> str:
    speedup = results.speedup(cell)
    if not speedup:
        return ""
    paired = results.speedup_interval(cell)
    return f"{speedup:.2f}x" + (f"\n[{paired.low:.2f}, {paired.high:.2f}]" if paired else "")


def _memory_label(results: ResultSet, cell) -> str:
    """The batch size's peak memory under the speed-up, and its ratio to the baseline's: "312 MiB (0.52x)"."""
    peak = cell.metric("peak_memory")
    if not peak:
        return ""
    ratio = memory_ratio(results, cell) if cell.config != results.baseline else None
    return "\n" + format_size(peak) + (f" ({ratio:.2f}x)" if ratio is not None else "")


def _heading(results: ResultSet, n_columns: int, any_watts: bool) -> str:
    """What the bars, whiskers and labels mean, under the model's title."""
    unit = results.model.unit
    coverages = [c.interval.coverage for c in results.cells if c.ok and c.interval]
    # under 6 samples an interval covers less: never claim more than it has, nor an interval never recorded
    whiskers = f"whiskers: {coverage_words(*coverages)} CI of the median" if coverages else "no intervals recorded"
    pairs = [r for r in (results.speedup_interval(c) for c in results.cells) if r is not None]
    labelled = (
        "labels: speed-up vs "
        + baseline_label(results)
        + (f" [its {coverage_words(*(r.coverage for r in pairs))} interval, paired by round]" if pairs else "")
        if n_columns <= 12
        else "speed-ups in the tables"
    )
    if n_columns <= 12 and any(c.metric("peak_memory") for c in results.cells if c.ok):
        labelled += "; under it the peak memory (vs the baseline's)"
    heading = f"{results.model.title}, {results.mode}\nbars: median {unit}/s; {whiskers}; {labelled}"
    if not any_watts:
        heading += f"; {unit}/s per W: power not measurable here"
    return heading


def render_plot(results: ResultSet, path: Path) -> tuple[bytes | None, str | None]:
    """Draw the chart into ``path``; returns (the PNG, None), or (None, a one-line note) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None, "results.png not written: matplotlib is not installed (pip install 'devswitch[plot]')"
    from ..results import write_atomic

    fig = build_figure(results)
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, image.getvalue())
    return image.getvalue(), None
