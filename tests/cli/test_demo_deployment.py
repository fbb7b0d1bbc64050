"""The demo when the deployment gate keeps blue: it says so and reports search as unchanged, no traceback."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from examples.demo.outcome import DemoResult, deployment_outcome, print_outcome

NOT_DEPLOYED = "not deployed: NDCG@10 0.4100 against blue 0.4300"


def test_the_gate_verdict_is_read_from_the_task_result() -> None:
    assert deployment_outcome({"deployment": {"deployed": False, "reason": NOT_DEPLOYED}}) == (False, NOT_DEPLOYED)
    assert deployment_outcome({"deployment": {"deployed": True, "reason": "deployed: x"}}) == (True, "deployed: x")
    assert deployment_outcome({"reindex_task_id": "r1"}) == (True, None)  # a server from before the gate


def test_the_outcome_of_a_model_that_was_not_deployed_says_why_and_that_search_is_unchanged(tmp_path: Path) -> None:
    figures = {"ndcg@10": 0.43, "mrr@10": 0.5, "recall@100": 0.8}
    demo = DemoResult(
        task_id="t1",
        batch_id=2,
        before=figures,
        after=figures,
        report_path=tmp_path / "r.html",
        data_dir=tmp_path,
        mlflow_uri="sqlite:///x",
        api_url="http://127.0.0.1:1",
        blue_model_id="all-MiniLM-L6-v2",
        sessions=10,
        clicks=4,
        kept_untrained_weights=True,
        deployed=False,
        deployment_reason=NOT_DEPLOYED,
    )
    console = Console(record=True, width=300)
    print_outcome(console, demo, keep_serving=False)
    text = console.export_text()
    assert f"The fine-tuned model was {NOT_DEPLOYED}." in text
    assert "Search still answers from all-MiniLM-L6-v2, so the figures after are unchanged." in text
    assert "+0.0000" in text
    assert "carries the base model's weights" not in text  # that note is about a deployed model
    assert demo.summary()["deployed"] is False and demo.summary()["deployment_reason"] == NOT_DEPLOYED
