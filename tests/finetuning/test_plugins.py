"""Fine-tuning methods are found through the ``embedding_studio.plugins`` entry-point group."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from embedding_studio.config import Settings
from embedding_studio.finetuning.errors import FineTuningError, InvalidSearchSpaceError, UnknownMethodError
from embedding_studio.finetuning.method import (
    FineTuningMethod,
    LoaderConfig,
    available_methods,
    get_method,
    suggest_params,
)
from embedding_studio.finetuning.params import FineTuningParams


def test_default_text_is_discovered_through_its_entry_point(tmp_path: Path) -> None:
    assert "default_text" in available_methods()
    settings = Settings(data_dir=tmp_path, catalog_loader="local_text", catalog_loader_options={"root": "/x"})
    method = get_method("default_text", settings=settings)
    assert isinstance(method, FineTuningMethod)
    assert method.name == "default_text"
    assert method.base_model == "all-MiniLM-L6-v2"
    assert method.loader == LoaderConfig(name="local_text", options={"root": "/x"})
    # every searched name is a FineTuningParams field, so a trial's params always validate
    assert set(method.search_space) <= set(FineTuningParams.model_fields)


def test_unknown_method_lists_the_available_ones() -> None:
    with pytest.raises(UnknownMethodError) as raised:
        get_method("no_such_method")
    message = str(raised.value)
    assert "no_such_method" in message
    assert "default_text" in message
    assert "embedding_studio.plugins" in message


@pytest.fixture()
def third_party_plugin(tmp_path: Path) -> Iterator[str]:
    """An installed distribution declaring a plugin, as ``pip install`` would lay it out."""
    package = tmp_path / "shop_plugin.py"
    package.write_text(
        textwrap.dedent(
            """
            from embedding_studio.finetuning.method import FineTuningMethod, LoaderConfig

            def create_plugin(max_evals=2):
                return FineTuningMethod(
                    name="shop_titles",
                    loader=LoaderConfig(name="local_json", options={"root": "/catalog"}),
                    search_space={"query_lr": [1e-5, 3e-5]},
                    max_evals=max_evals,
                )

            def not_a_method():
                return 42
            """
        )
    )
    dist_info = tmp_path / "shop_plugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: shop-plugin\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[embedding_studio.plugins]\nshop_titles = shop_plugin:create_plugin\nbroken = shop_plugin:not_a_method\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield "shop_titles"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("shop_plugin", None)


def test_an_installed_third_party_plugin_is_found_and_configured(third_party_plugin: str) -> None:
    assert third_party_plugin in available_methods()
    method = get_method(third_party_plugin, max_evals=5)
    assert method.name == "shop_titles"
    assert method.max_evals == 5
    # a factory that does not take ``settings`` is not offered it
    assert get_method(third_party_plugin, settings=Settings()).max_evals == 2


def test_a_plugin_that_returns_something_else_is_refused(third_party_plugin: str) -> None:
    with pytest.raises(FineTuningError, match="broken.*returned int, not a FineTuningMethod"):
        get_method("broken")


def test_search_space_lists_become_categorical_and_trials_draw_from_it() -> None:
    method = FineTuningMethod(
        name="m",
        loader=LoaderConfig(name="local_text"),
        loss="margin_ranking",
        search_space={"query_lr": FloatDistribution(1e-5, 1e-3, log=True), "margin": [0.1, 0.3]},
        fixed_params={"use_ips": False},
    )
    assert method.search_space["margin"] == CategoricalDistribution([0.1, 0.3])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    params = suggest_params(trial, method)
    assert 1e-5 <= params["query_lr"] <= 1e-3
    assert params["margin"] in (0.1, 0.3)
    assert params["loss"] == "margin_ranking"
    assert params["use_ips"] is False
    FineTuningParams.model_validate(params)


@pytest.mark.parametrize(
    ("space", "problem"),
    [({"margin": []}, "no choices"), ({"margin": "0.2"}, "distribution or a list"), ({"nope": [1]}, "nope")],
)
def test_bad_search_spaces_are_named(space: dict[str, object], problem: str) -> None:
    with pytest.raises(InvalidSearchSpaceError, match=problem):
        FineTuningMethod(name="m", loader=LoaderConfig(name="local_text"), search_space=space)  # type: ignore[arg-type]
