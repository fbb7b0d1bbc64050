"""One self-contained HTML page per fine-tuning task: plots inline as SVG, no scripts, no external files.

Self-contained so the page can be mailed, attached to a ticket or opened from an artifact store and
still show everything; SVG so the plots stay sharp and are plain elements of the page.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: reports are written by workers and CI as often as by people

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from embedding_studio.evaluation.metrics import BootstrapInterval  # noqa: E402
from embedding_studio.reporting.data import (  # noqa: E402
    ChangedQuery,
    HeldOutComparison,
    ImageQueryComparison,
    ImageResult,
    ReportData,
    ShownResult,
    TrialCurve,
    write_atomically,
)

_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #1f2328; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #d0d7de; }
table { border-collapse: collapse; margin: .6rem 0; } td, th { border: 1px solid #d0d7de; padding: .3rem .6rem; }
th { background: #f6f8fa; text-align: left; } .num { text-align: right; font-variant-numeric: tabular-nums; }
.up { color: #1a7f37; font-weight: 600; } .down { color: #cf222e; font-weight: 600; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; } figure { margin: 0; } figcaption { font-size: .85rem; }
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; } .side ol { padding-left: 1.4rem; margin: 0; }
.side li { margin-bottom: .35rem; font-size: .9rem; } .grade { display: inline-block; min-width: 1.2rem;
       text-align: center; border-radius: 4px; padding: 0 .25rem; margin-right: .3rem; font-size: .8rem; }
.g0 { background: #eaeef2; } .g1 { background: #fff1b3; } .g2 { background: #b6e3b6; } .g3 { background: #6fcf7f; }
.query { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: .8rem; margin: .8rem 0; }
.muted { color: #656d76; font-size: .9rem; }
.deployment { border-radius: 6px; padding: .6rem .9rem; font-weight: 600; }
.deployed { background: #dafbe1; border: 1px solid #4ac26b; } .not-deployed { background: #fff8c5;
       border: 1px solid #d4a72c; }
.thumbs { display: flex; gap: .3rem; flex-wrap: wrap; } .thumbs figure { width: 64px; font-size: .7rem;
       overflow-wrap: anywhere; } .thumbs img { width: 64px; height: auto; border: 1px solid #d0d7de; }
"""

METRIC_LABELS = {"ndcg@10": "NDCG@10", "mrr@10": "MRR@10", "recall@100": "Recall@100"}


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: inline SVG in HTML takes neither


_SHARE_MARKERS = ("D", "s", "^", "v", "P", "X")


def _trial_plots(trials: list[TrialCurve]) -> list[tuple[str, str]]:
    """One plot per validation metric, one line per trial (the best trial drawn bold), as (caption, svg).

    Where a pruner decided, a trial was judged by the better of its curve and its weight shares' figures, so those
    figures are drawn on the curve, hollow markers in the trial's colour: without them a falling curve that the
    pruner kept going has no visible reason. Plots of runs that logged none look as they always did."""
    metric_names = sorted({name for trial in trials for name, points in trial.metrics.items() if points})
    shares = sorted({share for trial in trials for share in trial.share_figures})
    marker_of_share = {share: _SHARE_MARKERS[index % len(_SHARE_MARKERS)] for index, share in enumerate(shares)}
    plots = []
    for metric in metric_names:
        figure, axes = plt.subplots(figsize=(5.2, 3.2))
        drawn_shares: set[float] = set()
        for trial in trials:
            points = sorted(trial.metrics.get(metric, []))
            if not points:
                continue
            steps = [step for step, _ in points]
            values = [value for _, value in points]
            label = f"{trial.name} (best)" if trial.is_best else trial.name
            (curve,) = axes.plot(
                steps, values, marker="o", markersize=3, linewidth=2.6 if trial.is_best else 1.2, label=label
            )
            for share in sorted(trial.share_figures):
                share_points = sorted(trial.share_figures[share].get(metric, []))
                if not share_points:
                    continue
                axes.plot(
                    [step for step, _ in share_points],
                    [value for _, value in share_points],
                    linestyle="none",
                    marker=marker_of_share[share],
                    markersize=6,
                    markerfacecolor="none",
                    color=curve.get_color(),
                    label="_nolegend_",
                )
                drawn_shares.add(share)
        handles, _ = axes.get_legend_handles_labels()
        handles += [
            Line2D(
                [],
                [],
                linestyle="none",
                marker=marker_of_share[share],
                markerfacecolor="none",
                markeredgecolor="#656d76",
                label=_share_label(share),
            )
            for share in sorted(drawn_shares)
        ]
        axes.set_xlabel("training step")
        axes.set_ylabel(metric)
        axes.set_title(metric)
        axes.grid(alpha=0.3)
        axes.legend(handles=handles, fontsize=7)
        caption = f"{metric} on the validation split of the clickstream"
        if drawn_shares:
            caption += (
                "; hollow markers, in the colour of their trial: "
                + ", ".join(_share_label(share) for share in sorted(drawn_shares))
                + " (a trial is judged there by the better of its curve and its weight shares)"
            )
        plots.append((caption, _svg(figure)))
    return plots


def _share_label(share: float) -> str:
    return f"weight share {share:g} at the pruner's decisions"


def _comparison_plot(held_out: HeldOutComparison, after_label: str = "after (fine-tuned)") -> str:
    names = [name for name in METRIC_LABELS if name in held_out.before and name in held_out.after]
    figure, axes = plt.subplots(figsize=(5.2, 3.2))
    positions = range(len(names))
    width = 0.38
    before = [held_out.before[name] for name in names]
    after = [held_out.after[name] for name in names]
    axes.bar(
        [position - width / 2 for position in positions], before, width, label="before (base model)", color="#8c959f"
    )
    axes.bar([position + width / 2 for position in positions], after, width, label=after_label, color="#2da44e")
    for position, (old, new) in enumerate(zip(before, after, strict=True)):
        axes.text(position - width / 2, old, f"{old:.3f}", ha="center", va="bottom", fontsize=7)
        axes.text(position + width / 2, new, f"{new:.3f}", ha="center", va="bottom", fontsize=7)
    axes.set_xticks(list(positions), [METRIC_LABELS[name] for name in names])
    axes.set_ylim(0, min(1.1, max(before + after + [0.1]) * 1.25))  # room for the value labels above 1.0 bars
    axes.set_title(f"held-out queries ({held_out.query_count})")
    axes.legend(fontsize=7, loc="lower right")
    return _svg(figure)


def _per_query_plot(held_out: HeldOutComparison) -> str:
    figure, axes = plt.subplots(figsize=(3.6, 3.4))
    pairs = list(held_out.ndcg_per_query.values())
    axes.plot([0, 1], [0, 1], color="#8c959f", linewidth=1, linestyle="--")
    axes.scatter([before for before, _ in pairs], [after for _, after in pairs], s=14, color="#0969da")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("NDCG@10 before")
    axes.set_ylabel("NDCG@10 after")
    axes.set_title("per query (above the line: better)")
    return _svg(figure)


def _delta(before: float, after: float) -> str:
    change = after - before
    css = "up" if change > 0 else "down" if change < 0 else ""
    return f'<span class="{css}">{change:+.4f}</span>'


def _interval_text(interval: BootstrapInterval) -> str:
    return f"[{interval.low:+.4f}, {interval.high:+.4f}]"


def _interval_sentence(interval: BootstrapInterval, query_count: int) -> str:
    """What the interval says, in words: a reader should not have to know bootstrap to read it."""
    verdict = (
        "it lies wholly above zero: the gain is not explained by which queries were asked"
        if interval.low > 0.0
        else "it lies wholly below zero: search got worse on these queries"
        if interval.high < 0.0
        else "it includes zero: these queries cannot tell the change from noise"
    )
    return (
        f"NDCG@10 change {interval.mean_difference:+.4f}, {interval.confidence:.0%} confidence interval "
        f"[{interval.low:+.4f}, {interval.high:+.4f}] (paired bootstrap over the {query_count} queries, "
        f"{interval.samples:,} resamples); {verdict}."
    )


def _results_list(results: list[ShownResult]) -> str:
    rows = []
    for result in results:
        grade = result.grade if result.grade is not None else 0
        badge = f'<span class="grade g{min(max(grade, 0), 3)}" title="relevance grade">{grade}</span>'
        text = escape(result.text if len(result.text) <= 160 else result.text[:157] + "…")
        rows.append(f"<li>{badge}<code>{escape(result.item_id)}</code> {text}</li>")
    return "<ol>" + "".join(rows) + "</ol>"


def _changed_query_block(change: ChangedQuery) -> str:
    return (
        f'<div class="query"><strong>{escape(change.query)}</strong> '
        f'<span class="muted">NDCG@10 {change.ndcg_before:.3f} → {change.ndcg_after:.3f} '
        f"({_delta(change.ndcg_before, change.ndcg_after)})</span>"
        f'<div class="side"><div><h4>before</h4>{_results_list(change.before)}</div>'
        f"<div><h4>after</h4>{_results_list(change.after)}</div></div></div>"
    )


def _thumbnails(results: list[ImageResult]) -> str:
    cells = "".join(
        f'<figure><img src="{escape(result.thumbnail)}" alt="{escape(result.item_id)}" '
        f'title="{escape(result.key)} ({result.score:.3f})"><figcaption>{escape(result.item_id)}</figcaption></figure>'
        for result in results
        if result.thumbnail.startswith("data:image/")  # only inline pictures: the page loads nothing from elsewhere
    )
    return f"<div class='thumbs'>{cells}</div>"


def _image_query_block(comparison: ImageQueryComparison) -> str:
    return (
        f'<div class="query"><strong>{escape(comparison.query)}</strong>'
        f'<div class="side"><div><h4>before (start model)</h4>{_thumbnails(comparison.before)}</div>'
        f"<div><h4>after (fine-tuned)</h4>{_thumbnails(comparison.after)}</div></div></div>"
    )


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>"


def _parameters_worth_showing(trials: list[TrialCurve]) -> list[str]:
    """The parameters that differ between trials (all of them when there is a single trial)."""
    names = sorted({name for trial in trials for name in trial.params})
    if len(trials) < 2:
        return names
    return [name for name in names if len({trial.params.get(name) for trial in trials}) > 1]


def render_report(data: ReportData) -> str:
    """The whole page as one string."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(data.title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(data.title)}</h1>",
        f"<p class='muted'>generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}</p>",
    ]
    details = dict(data.details)
    for key, value in (("task", data.task_id), ("experiment", data.experiment_id), ("best run", data.best_run_id)):
        if value:
            details.setdefault(key, value)
    if details:
        parts.append(
            "<table>"
            + "".join(f"<tr><th>{escape(key)}</th><td>{escape(str(value))}</td></tr>" for key, value in details.items())
            + "</table>"
        )

    if data.deployment is not None:
        css = "deployed" if data.deployment.deployed else "not-deployed"
        parts.append(f"<p class='deployment {css}'>{escape(data.deployment.reason)}</p>")

    parts.append("<h2>Held-out queries: before and after</h2>")
    held_out = data.held_out
    if held_out is None:
        parts.append(
            "<p class='muted'>No held-out evaluation was recorded for this task "
            "(<code>make demo</code> records one, from its dataset's relevance judgments "
            "of queries the model never trained on).</p>"
        )
    else:
        interval = held_out.ndcg_change
        rows = "".join(
            f"<tr><td>{METRIC_LABELS.get(name, name)}</td><td class='num'>{held_out.before[name]:.4f}</td>"
            f"<td class='num'>{held_out.after[name]:.4f}</td>"
            f"<td class='num'>{_delta(held_out.before[name], held_out.after[name])}</td>"
            + (
                f"<td class='num'>{_interval_text(interval) if name == 'ndcg@10' else ''}</td>"
                if interval is not None
                else ""
            )
            + "</tr>"
            for name in held_out.before
            if name in held_out.after
        )
        interval_header = f"<th>{interval.confidence:.0%} interval of the change</th>" if interval is not None else ""
        parts.append(
            f"<p>{held_out.query_count} queries of <code>{escape(held_out.dataset)}</code> the model never "
            "trained on, scored against the dataset's graded relevance judgments.</p>"
            f"<table><tr><th>metric</th><th>before</th><th>after</th><th>change</th>{interval_header}</tr>"
            f"{rows}</table>"
        )
        if interval is not None:
            parts.append(f"<p class='interval'>{_interval_sentence(interval, held_out.query_count)}</p>")
        kept_blue = data.deployment is not None and not data.deployment.deployed
        plots = [
            _figure(
                _comparison_plot(held_out, "after (blue kept)"),
                "mean metrics: the fine-tuned model was not deployed, so search after is search before",
            )
            if kept_blue
            else _figure(_comparison_plot(held_out), "mean metrics, base model vs deployed model")
        ]
        if held_out.ndcg_per_query:
            plots.append(_figure(_per_query_plot(held_out), "each dot is one held-out query"))
        parts.append("<div class='plots'>" + "".join(plots) + "</div>")
        if held_out.changed_queries:
            parts.append("<h2>Queries whose top results changed</h2>")
            parts.append(
                "<p class='muted'>Top results before and after, with the judged relevance grade "
                "of each (0: not relevant or unjudged).</p>"
            )
            parts.extend(_changed_query_block(change) for change in held_out.changed_queries)

    if data.image_queries or data.image_queries_note:
        parts.append("<h2>Image queries: top results before and after</h2>")
        if data.image_queries_note:
            parts.append(f"<p class='muted'>{escape(data.image_queries_note)}</p>")
        parts.extend(_image_query_block(comparison) for comparison in data.image_queries)

    parts.append("<h2>Validation metrics per step, per trial</h2>")
    if not data.trials:
        parts.append("<p class='muted'>No trials were found in the tracker for this task.</p>")
    else:
        parts.append(
            "<div class='plots'>"
            + "".join(_figure(svg, caption) for caption, svg in _trial_plots(data.trials))
            + "</div>"
        )
        parameter_names = _parameters_worth_showing(data.trials)
        header = "".join(f"<th>{escape(name)}</th>" for name in parameter_names)
        body = "".join(
            f"<tr><td>{escape(trial.name)}{' ★' if trial.is_best else ''}</td><td><code>{escape(trial.run_id)}"
            "</code></td>"
            + "".join(f"<td>{escape(str(trial.params.get(name, '')))}</td>" for name in parameter_names)
            + "</tr>"
            for trial in data.trials
        )
        parts.append(f"<table><tr><th>trial</th><th>run</th>{header}</tr>{body}</table>")
    parts.append("</body></html>")
    return "".join(parts)


def write_report(data: ReportData, path: str | Path) -> Path:
    """Write the page (and its data as JSON beside it, so it can be re-rendered) atomically."""
    path = Path(path)
    data.save_json(path.with_suffix(".json"))
    return write_atomically(path, render_report(data))
