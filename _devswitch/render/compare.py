"""A compare result set and an A/B comparison as tables (data), then as markdown, CSV and one HTML page."""

from __future__ import annotations

import base64
import csv
import io
import re
from collections.abc import Mapping

from ..compare.options import FOUND_NAMES, batch_label
from ..compare.recommend import Pick, below_95, fmt, recommend, recommendation_lines
from ..compare.report import Comparison, verdict
from ..compare.resultset import Cell, ResultSet
from ..peaks import above_peak_note
from . import html as html_table
from . import markdown, script
from .cells import Footnotes, baseline_label, interval_text, memory_ratio, memory_text, speedup_text, with_decision
from .escape import csv_row, safe
from .table import Column, Table


def batch_table(results: ResultSet, batch: int, notes: Footnotes) -> Table:
    """One batch size: a column per configuration, a row per figure."""
    unit = results.model.unit
    cells = [c for c in (results.cell(config, batch) for config in results.configs) if c is not None]
    rows: dict[str, list[str]] = {
        f"{unit}/s": [],
        f"model.predict {unit}/s": [],
        "W": [],
        f"{unit}/s per W": [],
        f"speed-up vs {baseline_label(results)}": [],
        "latency p50 / p99 (ms)": [],
        f"peak memory (vs {baseline_label(results)})": [],
        "GFLOP/s (of peak)": [],
        "matmul probe GFLOP/s": [],
    }
    names = list(rows)
    for c in cells:
        if not c.ok:
            for name in names:
                rows[name].append(notes.mark(c.status) if name == names[0] else "-")
            continue
        watts = c.metric("power")
        values = [
            f"{fmt(c.metric('throughput'))} {interval_text(c)}".strip(),
            fmt(c.metric("predict_throughput")),
            fmt(watts) if watts else "unavailable",
            fmt(c.metric("samples_per_watt"), 2) if watts else "-",
            speedup_text(results, c),
            f"{fmt(c.metric('latency_p50'), 2)} / {fmt(c.metric('latency_p99'), 2)}",
            memory_text(results, c),
            flops_text(c, notes),
            fmt(c.metric("matmul_probe")),
        ]
        for name, value in zip(names, values, strict=True):
            rows[name].append(value)
    if results.mode == "training":
        del rows[f"model.predict {unit}/s"]  # a predict figure says nothing about training steps
    rows.update(accuracy_rows(results, cells, notes))
    if batch in FOUND_NAMES:  # each column at its own batch, found in its worker: in its header and a row
        ran = [str(c.benchmark.batch) if c.ok and c.benchmark else "-" for c in cells]
        rows = {"batch": ran, **rows}
        columns = [Column(batch_label(batch))] + [
            Column(f"{results.column(c)} (batch {b})" if b != "-" else results.column(c), numeric=True)
            for c, b in zip(cells, ran, strict=True)
        ]
        return Table.of(columns, [[name, *values] for name, values in rows.items()])
    columns = [Column(f"batch {batch}")] + [Column(results.column(c), numeric=True) for c in cells]
    return Table.of(columns, [[name, *values] for name, values in rows.items()])


def flops_text(cell: Cell, notes: Footnotes) -> str:
    """``125.0 (75%) [1]``: the achieved GFLOP/s, its fraction of the device's theoretical peak, and a
    footnote with how the peak was found; no fraction where no peak is known (the footnote says why). Nor
    where the figure is above the peak: no figure above 100% of a peak is shown; the footnote says the peak
    is wrong and by how much."""
    record, achieved = cell.benchmark, cell.metric("achieved")
    if record is None or achieved is None:
        return "-"
    how = (record.peak_source or "no peak: not known")[:400]  # a file's text: bounded
    fraction = achieved / record.peak_gflops if record.peak_gflops else None
    if record.peak_gflops is None and record.probe_source.startswith("matmul probe, measured:"):
        # a file from before the theoretical peak: its "peak" was a matmul probe (BenchmarkRecord.from_dict)
        how = "no peak: this file's 'peak' is a matmul probe, not a peak (an older devswitch wrote it)"
    if fraction is None:
        return notes.mark(f"{fmt(achieved)}: {how}")
    if fraction > 1:
        return notes.mark(f"{fmt(achieved)}: {how}; {above_peak_note(fraction)}")
    return notes.mark(f"{fmt(achieved)} ({fraction:.0%}): {how}")


def error_text(value: float | None) -> str:
    if value is None:
        return "-"
    return "not finite" if value == float("inf") else f"{value:.1e}"


def accuracy_rows(results: ResultSet, cells: list[Cell], notes: Footnotes) -> dict[str, list[str]]:
    """The cost beside the speed: each column's distance from the strict float32 reference (no rows when
    no cell was compared with one)."""
    measured = [c.accuracy for c in cells if c.ok and c.accuracy]
    if not measured:
        return {}
    if results.mode == "training":
        rows: dict[str, list[str]] = {"loss vs fp32 reference": []}
    else:
        rows = {"rel. error vs fp32 (max / median)": []}
        if (results.reference or {}).get("classifier") or any(a.get("top1_agreement") is not None for a in measured):
            rows["top-1 agreement vs fp32"] = []
    for c in cells:
        acc = c.accuracy if c.ok else None
        for name in rows:
            if acc is None:
                rows[name].append("-")
            elif acc.get("status") != "ok":
                rows[name].append(notes.mark(str(acc.get("status"))))
            elif name.startswith("loss"):
                loss, diff = acc.get("loss"), acc.get("loss_rel_diff")
                rows[name].append("not finite" if loss is None else f"{loss:.4g} ({error_text(diff)})")
            elif name.startswith("rel."):
                nonfinite = acc.get("nonfinite_samples") or 0
                rows[name].append(
                    f"not finite in {nonfinite}/{acc.get('samples')}"
                    if nonfinite
                    else f"{error_text(acc.get('max_rel_error'))} / {error_text(acc.get('median_rel_error'))}"
                )
            else:
                top1 = acc.get("top1_agreement")
                shown = "-" if top1 is None else f"{top1:.0%}"
                rows[name].append("n/a (outputs not finite)" if acc.get("nonfinite_samples") else shown)
    return rows


def preamble(results: ResultSet) -> list[str]:
    """What the tables say and how they were measured: the machine, the accuracy reference, the rounds."""
    env = results.environment or {}
    if not env:
        return []
    accuracy, rounds = _accuracy_line(results), _rounds_line(results)
    return [_machine_line(results, env), *([accuracy] if accuracy else []), *([rounds] if rounds else [])]


def _machine_line(results: ResultSet, env: Mapping) -> str:
    frameworks = sorted(
        {
            f"{c.backend} {c.record.versions.get(c.backend, '') if c.record is not None else ''}".strip()
            for c in results.cells
            if c.ok
        }
    )
    coverages = [c.interval.coverage for c in results.cells if c.ok and c.interval]
    level = min([0.95, *coverages])
    what = (
        "its 95% confidence interval"
        if not below_95(level)
        else (
            "its 95% confidence interval or, with fewer than 6 samples, the whole range of the samples followed by "
            f"the probability that it covers the median ({level:.0%} here at the lowest)"
        )
    )
    return (
        f"Machine: {env.get('cpu')} ({env.get('cpu_cores')} cores); Keras {env.get('keras')} on "
        f"{', '.join(frameworks) or env.get('backend', '?')}. Throughput is the median over timed samples, and "
        f"in brackets {what}; order statistics: distribution-free, assuming independent samples."
    )


def _accuracy_line(results: ResultSet) -> str | None:
    ref = results.reference or {}
    if ref.get("status") == "ok":
        if results.mode == "training":
            return (
                f"Accuracy: every column starts from the same weights; the loss after a few SGD steps on "
                f"{ref.get('samples')} seeded samples, and in brackets its relative difference from the "
                f"reference's ({ref.get('backend')} cpu float32, {ref.get('math')} math)."
            )
        else:
            return (
                f"Accuracy: every column runs the same weights on the same {ref.get('samples')} seeded "
                f"inputs through its timed call path; its outputs against a strict float32 reference "
                f"({ref.get('backend')} cpu, {ref.get('math')} math): per sample ||y - y_ref|| / ||y_ref||, "
                "the largest and the median"
                + (", and how often the top-1 class agrees." if ref.get("classifier") else ".")
            )
    elif ref:
        return f"Accuracy not measured: the reference run {ref.get('status')}."
    return None


def _rounds_line(results: ResultSet) -> str | None:
    rounds = results.options.get("rounds") or 1
    paired = [r for r in (results.speedup_interval(c) for c in results.cells) if r is not None]
    if paired:
        level = min(r.coverage for r in paired)
        return (
            f"The configurations took turns in {rounds} rounds (A B C A B C ...), so a burst or drift of the "
            "machine slows every column alike. The speed-up is the median of the per-round ratios of "
            "median throughputs, and in brackets the interval of that median "
            + (
                f"({level:.0%} coverage: the whole range of {min(r.rounds for r in paired)} ratios)."
                if below_95(level)
                else "(95%)."
            )
        )
    elif rounds == 1 and results.cells:
        return (
            "The configurations ran one after another (--rounds 1): the speed-up is the ratio of medians "
            "and has no interval; a burst or drift between columns moves it unseen."
        )
    return None


def epilogue(results: ResultSet, notes: Footnotes, picks: list[Pick]) -> list[str]:
    """Everything under the tables, as plain lines (inline `code` allowed)."""
    lines: list[str] = []
    unit = results.model.unit
    if results.mode == "training":
        trained = next(
            (c.benchmark.training for c in results.cells if c.ok and c.benchmark and c.benchmark.training), None
        )
        what = (
            f"loss {trained.get('loss')}, optimizer {trained.get('optimizer')}"
            if trained
            else "the model's loss and optimizer"
        )
        lines.append(
            f"Training: timed `model.train_on_batch` steps ({what}); {unit}/s counts training samples. "
            "GFLOP/s is an estimate: 3x the forward FLOPs (forward + two backward matmuls)."
        )
    lines += notes.lines()
    if any(b in FOUND_NAMES for b in results.batch_sizes):
        from .cells import found_line  # (the module's own import line is full)

        lines.append(found_line(results))
    if any(c.metric("peak_memory") for c in results.cells if c.ok):
        lines.append(MEMORY_LINE)
    reasons = sorted(
        {
            str(c.benchmark.energy.reason)
            for c in results.cells
            if c.ok and c.benchmark and c.benchmark.energy and c.benchmark.energy.reason
        }
    )
    if reasons:
        lines.append("Power not measured: " + "; ".join(reasons) + ". No figure is estimated.")
    lines += recommendation_lines(results, picks)
    t = results.timing
    if t.get("overhead_ratio"):
        lines.append(
            f"Wall time {t['total_s']:.1f} s = {t['overhead_ratio']:.2f}x the measured phases "
            f"({t['sum_measured_s']:.1f} s) plus framework start-ups ({t['sum_startup_s']:.1f} s)."
        )
    if results.interrupted:
        lines.append("Interrupted: the rows marked 'interrupted' / 'not run' were not measured.")
    if not results.complete:
        lines.append(
            "Incomplete: written while compare was running; the rows marked 'not run (pending)' were "
            "not measured yet (if compare is no longer running, it was stopped before them)."
        )
    return lines


MEMORY_LINE = (
    "Peak memory: each batch size's own; on a GPU the allocator's peak over the first call and warm-up (with the "
    "weights; on JAX only where the batch size raised the process's peak, which JAX cannot reset), on a CPU the "
    "resident memory the process gained above its level before the batch size, sampled through its timed steps "
    "too (the framework's one-time costs "
    "fall on the first one; a batch after a larger one can read low). In brackets: the ratio to the baseline's "
    "at the same batch size. Each record's JSON says how its figure was measured (metrics.peak_memory.note)."
)


def title(results: ResultSet) -> str:
    return f"devswitch compare: {results.model.title} ({results.mode})"


def _sections(results: ResultSet) -> tuple[list[str], list[Table], list[str]]:
    """The lines above the tables, the tables, the lines under them: of a factory's or a script's compare."""
    notes, picks = Footnotes(), recommend(results)
    if results.kind == "script":
        tables = [with_decision(results, script.table(results, notes), 1, picks)]
        return script.preamble(results), tables, script.epilogue(results, notes, picks)
    tables = [with_decision(results, batch_table(results, b, notes), b, picks) for b in results.batch_sizes]
    return preamble(results), tables, epilogue(results, notes, picks)


def render_markdown(results: ResultSet) -> str:
    above, tables, below = _sections(results)
    parts = [f"# {markdown.escape(title(results))}", ""]
    for line in above:
        parts += [markdown.escape(line), ""]
    for table in tables:
        parts += [markdown.render(table)]
    for line in below:
        parts += [markdown.escape(line), ""]
    return "\n".join(parts).rstrip() + "\n"


CSV_FIELDS = [
    "backend",
    "device",
    "precision",
    "resolved_precision",
    "batch",
    "status",
    "policy",
    "throughput",
    "throughput_ci_low",
    "throughput_ci_high",
    "throughput_ci_coverage",
    "throughput_jitter",
    "throughput_overall",
    "predict_throughput",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p99_ms",
    "first_call_s",
    "achieved_gflops",
    "fraction_of_peak",
    "power_w",
    "energy_j",
    "per_watt",
    "peak_memory_bytes",
    "peak_memory_vs_baseline",
    "speedup_vs_baseline",
    "speedup_ci_low",
    "speedup_ci_high",
    "speedup_ci_coverage",
    "speedup_rounds",
    "max_rel_error",
    "median_rel_error",
    "top1_agreement",
    "loss",
    "loss_rel_diff",
    "accuracy_note",
    "power_note",
]


def _speedup_columns(ratio) -> dict:
    if ratio is None:
        return {}
    return {
        "speedup_ci_low": ratio.low,
        "speedup_ci_high": ratio.high,
        "speedup_ci_coverage": ratio.coverage,
        "speedup_rounds": ratio.rounds,
    }


def _accuracy_columns(acc) -> dict:
    if not acc:
        return {}
    if acc.get("status") != "ok":
        return {"accuracy_note": acc.get("status")}
    columns = {k: acc.get(k) for k in ("max_rel_error", "median_rel_error", "top1_agreement", "loss", "loss_rel_diff")}
    if acc.get("nonfinite_samples"):  # an older file may hold the 100% that argmax of NaN gave
        columns.update(
            top1_agreement=None,
            accuracy_note=f"top-1 agreement n/a: outputs not finite in {acc['nonfinite_samples']}/{acc.get('samples')}",
        )
    return columns


def csv_fields(results: ResultSet) -> list[str]:
    """CSV_FIELDS with one column per varied setting after the precision (none when nothing varies)."""
    at = CSV_FIELDS.index("precision") + 1
    return [*CSV_FIELDS[:at], *results.varied, *CSV_FIELDS[at:]]


def render_csv(results: ResultSet) -> str:
    if results.kind == "script":
        return script.render_csv(results)
    out = io.StringIO()
    writer = csv.DictWriter(out, csv_fields(results), lineterminator="\n")
    writer.writeheader()
    for c in results.cells:
        row = {
            "backend": c.backend,
            "device": c.device,
            "precision": c.precision,
            **dict(c.settings),
            "resolved_precision": c.resolved,
            "batch": c.benchmark.batch if c.batch in FOUND_NAMES and c.benchmark else c.batch,
            "status": c.status,
        }
        b = c.benchmark
        if c.ok and b is not None:  # ok: it has a record
            ci = c.interval or (None, None, None)
            s, energy = b.summary, b.energy
            row.update(
                policy=b.policy,
                throughput=b.samples_per_s,
                throughput_ci_low=ci[0],
                throughput_ci_high=ci[1],
                throughput_ci_coverage=ci[2],
                throughput_jitter=s.samples_per_s_jitter if s else None,
                throughput_overall=s.samples_per_s_overall if s else None,
                predict_throughput=b.predict_samples_per_s,
                latency_p50_ms=s.latency_p50_ms if s else None,
                latency_p90_ms=s.latency_p90_ms if s else None,
                latency_p99_ms=s.latency_p99_ms if s else None,
                first_call_s=b.first_call_s,
                achieved_gflops=b.achieved_gflops,
                fraction_of_peak=c.metric("fraction_of_peak"),
                power_w=energy.mean_watts if energy else None,
                energy_j=energy.joules if energy else None,
                per_watt=b.samples_per_watt,
                peak_memory_bytes=c.metric("peak_memory"),
                peak_memory_vs_baseline=memory_ratio(results, c),
                speedup_vs_baseline=results.speedup(c),
                **_speedup_columns(results.speedup_interval(c)),
                **_accuracy_columns(c.accuracy),
                power_note=(energy.reason if energy else None) or "",
            )
        writer.writerow(csv_row(row))
    return out.getvalue()


# --- the page ------------------------------------------------------------------------------------------

_CSS = """body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:75em;
color:#222;padding:0 1em}h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em}table{border-collapse:collapse;
margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}.num{text-align:right}
th{background:#f3f3f3}code{background:#f3f3f3;padding:0 .2em}img{max-width:100%}
.rec{background:#eef6ee;border-left:4px solid #4a4;padding:.5em 1em}"""


def inline(text: str) -> str:
    """Escape, then `code` spans: the only markup devswitch's own lines use."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", safe(text, "html"))


def render_html(results: ResultSet, png: bytes | None) -> str:
    """One self-contained page: the tables, the plot (embedded), the recommendation, the environment and
    every configuration value with its source. It references nothing outside itself (no network)."""
    above, tables, below = _sections(results)
    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{safe(results.model.title, 'html')} - devswitch compare</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{safe(title(results), 'html')}</h1>",
    ]
    parts += [f"<p>{inline(line)}</p>" for line in above]
    parts += [html_table.render(t) for t in tables]
    for line in below:
        css = " class='rec'" if line.startswith("Recommendation") else ""
        parts.append(f"<p{css}>{inline(line)}</p>")
    if png:
        parts.append(
            "<h2>Plot</h2><img alt='throughput per configuration and batch size' "
            f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
        )
    env = results.environment or {}
    if env:
        parts.append("<h2>Environment</h2>" + html_table.render(Table.of(["", "value"], env.items())))
    config = results.config or {}
    if config:
        rows = [
            (k, *((v.get(f) for f in ("value", "source", "location")) if isinstance(v, dict) else (v, "", "")))
            for k, v in config.items()
        ]
        varied = "".join(f", {name}" for name in results.varied)
        parts.append(
            "<h2>Configuration (of the first configuration run; compare sets backend, device, precision"
            f"{safe(varied, 'html')} per column)</h2>"
            + html_table.render(Table.of(["key", "value", "source", "location"], rows))
        )
    parts.append("<p><small>command: " + safe(" ".join(results.command), "html") + "</small></p></body></html>")
    return "\n".join(parts) + "\n"


# --- report A B --------------------------------------------------------------------------------------------


def comparison_table(comparison: Comparison) -> Table:
    unit = comparison.b.model.unit
    rows = [
        [
            c.key.label(),
            fmt(c.before),
            fmt(c.after),
            f"{c.ratio:.2f}x",
            f"{c.slower_pct:+.1f}%",
            verdict(c, comparison.fail_above),
        ]
        for c in comparison.changes
    ]
    for x in comparison.lost:
        fails = comparison.fail_above is not None and x.measured_by_a
        rows.append(
            [
                x.key.label(),
                fmt(x.a.metric("throughput")) if x.a is not None and x.a.ok else "-",
                fmt(x.b.metric("throughput")) if x.b is not None and x.b.ok else "-",
                "-",
                "-",
                x.why() + (f"; FAIL: {'not comparable' if x.unlike else 'measured in A, not in B'}" if fails else ""),
            ]
        )
    return Table.of(
        [
            Column("cell"),
            Column(f"A {unit}/s", numeric=True),
            Column(f"B {unit}/s", numeric=True),
            Column("B / A throughput", numeric=True),
            Column("time per sample", numeric=True),
            Column("change"),
        ],
        rows,
    )


def render_comparison(comparison: Comparison) -> str:
    a, b = comparison.a, comparison.b
    lines = [f"# devswitch report: B = {markdown.escape(b.path)} against A = {markdown.escape(a.path)}", ""]
    for side, results in (("A", a), ("B", b)):
        if results.interrupted or not results.complete:
            lines += [
                f"{side} is incomplete ({'interrupted' if results.interrupted else 'written while running'}):"
                " its missing cells are listed, not compared.",
                "",
            ]
    lines.append(markdown.render(comparison_table(comparison)))
    if comparison.fail_above is not None:
        lines += [
            f"Gate: a cell fails when B takes more than {comparison.fail_above:g}% longer per sample than A "
            "(A's median throughput / B's > 1 + PCT/100), or when A measured it and B did not.",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"
