"""How much the demo does (its profiles), and the fine-tuning method options that give the worker that budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: The shipped method the demo trains with: the demo shows what the product does, with only a smaller budget.
DEMO_METHOD = "default_text"


@dataclass(frozen=True)
class DemoProfile:
    """How much of everything the demo does; `quick` trades statistical weight for time, never realism.

    The sizes are set by wall time on 2 CPU cores, where encoding dominates: the catalog is encoded twice (the
    base index and the reindex after the flip, at the model's 256 tokens, about 1.7 parts per NFCorpus item),
    the validation pool once per validation (three in one epoch: the baseline, the epoch's end and half the
    change), and every clicked training session once per epoch."""

    name: str
    max_catalog_items: int | None  # None: the whole catalog; else BeirDataset.relevant_first
    train_queries: int | None  # training queries users search (a seeded sample); None: all of them
    sessions_per_query: int
    test_queries: int | None  # held-out queries scored before and after (a seeded sample); None: all
    max_evals: int  # trials; the first is always the default recipe (default_text's own parameters)
    num_epochs: int
    validation_pool_size: int  # catalog items sampled as the retrieval validation's distractors
    test_share: float = 0.2  # datasets without their own training split: the share of queries held out


# Sized on NFCorpus (3,633 long medical abstracts, 2,590 training and 323 test queries) by wall time on 2 CPU cores,
# where encoding dominates. quick on an idle machine: 103 s (index 16 s, 2,000 sessions 24 s, fine-tuning 36 s,
# reindex 10 s); 247 s with another CPU-bound job on the same 2 cores. full: 346 s with that job running. Both
# train one trial of the default_text recipe for one epoch; README.md ("make demo") has the gains and the seeds.
PROFILES = {
    "quick": DemoProfile(
        "quick",
        max_catalog_items=150,
        train_queries=500,
        sessions_per_query=4,
        test_queries=None,
        max_evals=1,
        num_epochs=1,
        validation_pool_size=150,
    ),
    "full": DemoProfile(
        "full",
        max_catalog_items=300,
        train_queries=1000,
        sessions_per_query=5,
        test_queries=None,
        max_evals=1,
        num_epochs=1,
        validation_pool_size=300,
    ),
}


def method_options(profile: DemoProfile, seed: int) -> dict[str, Any]:
    """The ``method_options`` of the demo's fine-tuning task: ``default_text`` with the profile's budget.

    Only the budget differs (trials, epochs, validation pool size) and the seed (the demo's --seed, which also
    seeds the session split, the validation pool and the training order and initialisation, so one seed always
    gives the same model): the loss, batch size, learning rate, negatives and every other recipe parameter are
    default_text's, so the demo shows what the shipped method does and follows it when its recipe changes. They
    travel in the task's request, as any client's would: no plugin of the demo's own is installed in the product.
    """
    from embedding_studio.finetuning.plugins.default_text import RECIPE

    return {
        "max_evals": profile.max_evals,
        "num_epochs": profile.num_epochs,
        "validation_pool_size": profile.validation_pool_size,
        "split_seed": seed,
        "validation_pool_seed": seed,
        # method_options replace a field whole, so the seed goes in beside the recipe's own fixed parameters.
        "fixed_params": {**RECIPE, "seed": seed},
    }
