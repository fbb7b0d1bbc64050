from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from embedding_studio.evaluation import BeirDataset, evaluate_rankings
from embedding_studio.reporting import (
    ChangedQuery,
    HeldOutComparison,
    ReportData,
    ShownResult,
    TrialCurve,
    render_report,
    write_report,
)
from embedding_studio.reporting.collect import collect_trials, compare_evaluations

ChromiumCommand = Callable[..., list[str]]


def sample_report() -> ReportData:
    trials = [
        TrialCurve(
            run_id=f"run{number}",
            name=f"trial {number}",
            params={"lr": str(10.0**-number), "loss": "margin"},
            metrics={
                "val_loss": [(step, 1.0 / (step + number)) for step in range(0, 50, 10)],
                "val_ndcg_at_10": [(step, 0.4 + 0.01 * step / number) for step in range(0, 50, 10)],
            },
            is_best=number == 1,
        )
        for number in (1, 2)
    ]
    change = ChangedQuery(
        query_id="q1",
        query="what is <script>alert(1)</script> a fahrenheit",
        ndcg_before=0.2,
        ndcg_after=0.8,
        before=[ShownResult("d9", "an unrelated passage", None), ShownResult("d1", "Fahrenheit scale", 2)],
        after=[ShownResult("d1", "Fahrenheit scale", 2), ShownResult("d9", "an unrelated passage", None)],
    )
    held_out = HeldOutComparison(
        dataset="msmarco",
        query_count=9,
        before={"ndcg@10": 0.41, "mrr@10": 0.6, "recall@100": 0.5},
        after={"ndcg@10": 0.47, "mrr@10": 0.66, "recall@100": 0.52},
        ndcg_per_query={"q1": (0.2, 0.8), "q2": (0.5, 0.45)},
        changed_queries=[change],
    )
    return ReportData(
        title="Fine-tuning task 7",
        task_id="7",
        details={"base model": "all-MiniLM-L6-v2"},
        trials=trials,
        held_out=held_out,
        best_run_id="run1",
    )


def test_page_holds_every_plot_inline_and_escapes_text() -> None:
    page = render_report(sample_report())
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") == 4  # val_loss, val_ndcg_at_10, before/after bars, per-query scatter
    assert "<?xml" not in page and "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "+0.0600" in page  # NDCG@10 change
    assert not re.search(r"(src|href)=[\"']?https?:|<link|url\([\"']?https?:", page)  # nothing fetched from outside
    assert "trial 1 ★" in page


def test_a_trial_shows_its_weight_share_figures_on_its_curve_where_the_pruner_decided() -> None:
    data = sample_report()
    data.trials[0].share_figures = {0.5: {"val_ndcg_at_10": [(10, 0.47), (20, 0.48)]}}
    page = render_report(data)
    assert page.count("<svg") == 4  # drawn on the trial's own plot, not a plot of their own
    assert page.count("weight share 0.5 at the pruner&#x27;s decisions") == 1  # the caption of val_ndcg_at_10 only
    assert "<!-- weight share 0.5 at the pruner's decisions -->" in page  # its legend entry
    ndcg_plot = page[page.index("<figure>", page.index("val_loss on the validation")) :]
    assert ndcg_plot.count("weight share 0.5 at the pruner's decisions -->") == 1
    assert "#2ca02c" not in ndcg_plot  # the markers take their trial's colour, so trial 2 keeps the cycle's second


def test_a_page_without_weight_share_figures_says_nothing_of_them() -> None:
    page = render_report(sample_report())
    assert "weight share" not in page
    assert "val_ndcg_at_10 on the validation split of the clickstream</figcaption>" in page


def test_page_without_held_out_or_trials_says_so() -> None:
    page = render_report(ReportData(title="empty"))
    assert "No held-out evaluation was recorded" in page
    assert "No trials were found" in page


def test_json_round_trip(tmp_path: Path) -> None:
    data = sample_report()
    data.trials[0].share_figures = {0.5: {"val_ndcg_at_10": [(10, 0.5)]}, 0.25: {"val_loss": [(20, 0.3)]}}
    path = write_report(data, tmp_path / "reports" / "task-7.html")
    assert path.exists() and not list(tmp_path.rglob("*.partial"))
    restored = ReportData.from_json(path.with_suffix(".json").read_text())
    assert restored == data


def test_compare_evaluations_picks_moved_queries() -> None:
    dataset = BeirDataset(
        corpus={item_id: ("", f"text of {item_id}") for item_id in ("a", "b", "c")},
        queries={"q1": "one", "q2": "two"},
        qrels={"q1": {"a": 2}, "q2": {"b": 1}},
    )
    before = evaluate_rankings({"q1": ["b", "a", "c"], "q2": ["b", "a"]}, dataset)
    after = evaluate_rankings({"q1": ["a", "b", "c"], "q2": ["b", "a"]}, dataset)
    comparison = compare_evaluations(before, after, dataset, shown=2)
    assert comparison.query_count == 2
    assert [change.query_id for change in comparison.changed_queries] == ["q1"]
    change = comparison.changed_queries[0]
    assert [result.item_id for result in change.after] == ["a", "b"]
    assert change.after[0].grade == 2 and change.after[1].grade is None
    assert change.ndcg_after == pytest.approx(1.0)
    assert comparison.after["mrr@10"] == pytest.approx(1.0) and comparison.before["mrr@10"] == pytest.approx(0.75)


def test_trials_come_from_the_tracker(tmp_path: Path) -> None:
    from embedding_studio.tracking import ExperimentsManager

    tracker = ExperimentsManager(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    iteration = tracker.start_iteration("default_text", "1")
    run_ids = []
    for number in range(2):
        with tracker.run(iteration, {"query_lr": 1e-5 * (number + 1), "loss": "info_nce"}) as run_id:
            for step in range(3):
                tracker.log_metrics(run_id, {"val_ndcg_at_10": 0.1 * step + number, "train_loss": 1.0}, step=step * 5)
        run_ids.append(run_id)
    trials = collect_trials(tracker, iteration.experiment_id, best_run_id=run_ids[1])
    assert [trial.run_id for trial in trials] == run_ids
    assert trials[1].is_best and not trials[0].is_best
    assert trials[1].metrics == {"val_ndcg_at_10": [(0, 1.0), (5, 1.1), (10, 1.2)]}  # train_* is not a val curve
    assert trials[0].params["query_lr"] == "1e-05" and trials[0].params["loss"] == "info_nce"
    page = render_report(ReportData(title="t", trials=trials))
    assert page.count("<svg") == 1 and "query_lr" in page and ">loss<" not in page  # only differing params


def test_weight_share_figures_come_from_the_tracker_apart_from_the_curves(tmp_path: Path) -> None:
    from embedding_studio.tracking import ExperimentsManager, share_figure_metrics

    tracker = ExperimentsManager(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    iteration = tracker.start_iteration("default_text", "1")
    with tracker.run(iteration, {"query_lr": 1e-5}) as run_id:
        for step in range(3):
            tracker.log_metrics(run_id, {"val_ndcg_at_10": 0.5 - 0.1 * step}, step=step * 5)
        for step in (5, 10):
            tracker.log_metrics(run_id, share_figure_metrics({0.5: {"val_ndcg_at_10": 0.45, "val_mrr": 0.6}}), step)
    (trial,) = collect_trials(tracker, iteration.experiment_id)
    assert trial.metrics == {"val_ndcg_at_10": [(0, 0.5), (5, 0.4), (10, pytest.approx(0.3))]}
    assert trial.share_figures == {0.5: {"val_mrr": [(5, 0.6), (10, 0.6)], "val_ndcg_at_10": [(5, 0.45), (10, 0.45)]}}
    page = render_report(ReportData(title="t", trials=[trial]))
    # one plot, the trial's val_ndcg_at_10 with its share's figures; val_mrr has no curve of the trial to sit by
    assert page.count("<svg") == 1 and "weight share 0.5 at the pruner&#x27;s decisions" in page


def test_a_metric_name_is_a_weight_share_figure_only_in_the_shape_share_figure_metrics_writes() -> None:
    from embedding_studio.tracking import share_figure_metrics, share_figure_of

    (name,) = share_figure_metrics({0.25: {"val_ndcg_at_10": 1.0}})
    assert share_figure_of(name) == (0.25, "val_ndcg_at_10")
    assert share_figure_of("val_ndcg_at_10") is None
    assert share_figure_of("share_half/val_ndcg_at_10") is None
    assert share_figure_of("share_0.5") is None


@pytest.mark.integration
def test_renders_in_headless_chromium_with_its_plots(headless_chromium: ChromiumCommand, tmp_path: Path) -> None:
    path = write_report(sample_report(), tmp_path / "report.html")
    url = path.resolve().as_uri()
    dom = subprocess.run(
        headless_chromium(tmp_path / "profile-dom", "--dump-dom", url),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert len(re.findall(r"<svg\b", dom)) == 4
    assert len(re.findall(r"<path\b", dom)) > 20  # the plots' lines and bars are really in the document
    assert "Queries whose top results changed" in dom

    screenshot = tmp_path / "page.png"
    subprocess.run(
        headless_chromium(
            tmp_path / "profile-shot", f"--screenshot={screenshot}", "--window-size=1200,2400", "--hide-scrollbars", url
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    image = Image.open(screenshot).convert("RGB")
    assert image.size == (1200, 2400)
    colours = image.getcolors(maxcolors=1_000_000) or []
    assert len(colours) > 50  # not a blank page: text, lines, bars
    pixels = image.load()
    green_bar = sum(
        1
        for x in range(0, image.width, 2)
        for y in range(0, image.height, 2)
        if abs(pixels[x, y][0] - 0x2D) < 12 and abs(pixels[x, y][1] - 0xA4) < 12 and abs(pixels[x, y][2] - 0x4E) < 12
    )
    assert green_bar > 200  # the "after" bars of the before/after plot were painted
