"""The held-out NDCG@10 change comes with its paired bootstrap interval: computed once, shown, saved, re-read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedding_studio.evaluation import BeirDataset, BootstrapInterval, evaluate_rankings, paired_bootstrap
from embedding_studio.reporting import HeldOutComparison, ReportData, render_report, write_report
from embedding_studio.reporting.collect import compare_evaluations


def _dataset() -> BeirDataset:
    items = [f"d{number}" for number in range(6)]
    return BeirDataset(
        corpus={item_id: ("", f"text of {item_id}") for item_id in items},
        queries={f"q{number}": f"query {number}" for number in range(4)},
        qrels={f"q{number}": {f"d{number}": 2, "d5": 1} for number in range(4)},
    )


def test_comparison_carries_the_paired_bootstrap_interval_of_the_ndcg_change() -> None:
    dataset = _dataset()
    before = evaluate_rankings({f"q{n}": ["d4", "d5", f"d{n}"] for n in range(4)}, dataset)
    after = evaluate_rankings(
        {f"q{n}": [f"d{n}", "d5", "d4"] if n < 3 else ["d4", "d5", "d3"] for n in range(4)}, dataset
    )
    comparison = compare_evaluations(before, after, dataset, bootstrap_seed=3)
    interval = comparison.ndcg_change
    assert interval is not None
    query_ids = list(before.per_query)
    expected = paired_bootstrap(
        [before.per_query[query_id].ndcg_at_10 for query_id in query_ids],
        [after.per_query[query_id].ndcg_at_10 for query_id in query_ids],
        seed=3,
    )
    assert interval == expected  # the same resamples for the same seed: the demo and its report agree
    assert interval.mean_difference == pytest.approx(comparison.after["ndcg@10"] - comparison.before["ndcg@10"])
    assert interval.low <= interval.mean_difference <= interval.high and interval.confidence == 0.95


def _report(interval: BootstrapInterval | None) -> ReportData:
    return ReportData(
        title="Fine-tuning task 9",
        held_out=HeldOutComparison(
            dataset="nfcorpus",
            query_count=170,
            before={"ndcg@10": 0.31, "mrr@10": 0.38, "recall@100": 0.84},
            after={"ndcg@10": 0.32, "mrr@10": 0.39, "recall@100": 0.84},
            ndcg_change=interval,
        ),
    )


def test_page_shows_the_interval_beside_the_change_and_says_what_it_means(tmp_path: Path) -> None:
    interval = BootstrapInterval(mean_difference=0.0123, low=0.0021, high=0.0225, samples=10_000)
    page = render_report(_report(interval))
    assert "95% interval of the change" in page
    assert "[+0.0021, +0.0225]" in page
    assert "NDCG@10 change +0.0123, 95% confidence interval [+0.0021, +0.0225]" in page
    assert "paired bootstrap over the 170 queries" in page and "wholly above zero" in page

    straddling = render_report(_report(BootstrapInterval(0.004, -0.003, 0.011, samples=10_000)))
    assert "includes zero" in straddling

    path = write_report(_report(interval), tmp_path / "task-9.html")
    restored = ReportData.from_json(path.with_suffix(".json").read_text())
    assert restored.held_out is not None and restored.held_out.ndcg_change == interval


def test_a_report_saved_before_intervals_existed_still_renders(tmp_path: Path) -> None:
    saved = json.loads(_report(None).to_json())
    saved["held_out"].pop("ndcg_change")
    data = ReportData.from_json(json.dumps(saved))
    assert data.held_out is not None and data.held_out.ndcg_change is None
    page = render_report(data)
    assert "NDCG@10" in page and "interval of the change" not in page
