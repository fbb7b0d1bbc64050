"""Fine-tuning methods: everything that differs between two kinds of catalog lives in one plugin.

A method says where the items come from (the loader), how a query becomes model input (the query
retriever), how an item becomes the text parts the model embeds (``item_text``: the same in training,
reindex and upserts), how items are prepared (item set manager settings), which model to start from (model
factory), what to optimise (the loss, a FineTuningParams field) and what to search over. Plugins
are found through the ``embedding_studio.plugins`` entry-point group, so a deployment adds one by
installing a package, without touching this code.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from pydantic import BaseModel, ConfigDict, Field

from embedding_studio.finetuning.errors import FineTuningError, InvalidSearchSpaceError, UnknownMethodError
from embedding_studio.finetuning.params import FineTuningParams
from embedding_studio.items.item_text import ItemText, ItemTextError

if TYPE_CHECKING:
    from embedding_studio.items import DataLoader, ItemSetManager
    from embedding_studio.items.upserted_items import UpsertedItems
    from embedding_studio.models import TextEmbeddingModel

PLUGIN_GROUP = "embedding_studio.plugins"

SearchSpace = Mapping[str, BaseDistribution | Sequence[Any]]


class LoaderConfig(BaseModel):
    """Names an items loader and its options, as ``items.create_loader(name, **options)`` takes them."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Loader name known to embedding_studio.items.create_loader, e.g. local_json.")
    options: dict[str, Any] = Field(default_factory=dict, description="Keyword options of that loader.")

    def create(self) -> DataLoader:
        from embedding_studio.items import create_loader

        return create_loader(self.name, **self.options)


def _default_query_retriever() -> Any:
    from embedding_studio.finetuning.query_retriever import TextQueryRetriever

    return TextQueryRetriever()


def _default_item_set_manager(item_text: ItemText) -> ItemSetManager:
    from embedding_studio.items import ItemSetManager

    return ItemSetManager(item_text=item_text)


def _default_model_factory(name_or_path: str) -> TextEmbeddingModel:
    from embedding_studio.models import load_embedding_model

    return load_embedding_model(name_or_path)


@dataclass
class FineTuningMethod:
    """One way of fine-tuning: the pieces the pipeline asks for, plus the search it runs.

    ``search_space`` maps FineTuningParams field names to an Optuna distribution or a list of choices;
    ``fixed_params`` are FineTuningParams fields every trial shares (the loss among them).
    """

    name: str
    loader: LoaderConfig | Callable[[], DataLoader]
    item_source: str = "default"
    query_retriever_factory: Callable[[], Any] = _default_query_retriever
    #: how an item becomes the text parts the model embeds; the collections it is indexed into keep it
    item_text: ItemText = field(default_factory=ItemText)
    #: gets ``item_text``, so a custom manager prepares items exactly as reindex and upserts will
    item_set_manager_factory: Callable[[ItemText], ItemSetManager] = _default_item_set_manager
    model_factory: Callable[[str], TextEmbeddingModel] = _default_model_factory
    base_model: str = "all-MiniLM-L6-v2"
    loss: str | None = None
    search_space: dict[str, BaseDistribution | Sequence[Any]] = field(default_factory=dict)
    fixed_params: dict[str, Any] = field(default_factory=dict)
    max_evals: int = 8
    num_epochs: int = 3
    test_each_n_inputs: int | float = 1.0
    main_metric: str = "val_ndcg_at_10"
    higher_is_better: bool = True
    top_params_count: int = 3
    #: search the parameters again once this many iterations in a row reused previous ones without improving on
    #: their start model by more than ``min_iteration_gain`` (``hpo.search_again_reason``)
    search_again_after: int = 2
    min_iteration_gain: float = 0.0
    test_share: float = 0.2
    split_seed: int = 0
    batch_size: int = 16
    #: catalog items sampled (besides every item the batch showed) as the retrieval validation's distractors
    validation_pool_size: int = 2000
    validation_pool_seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.item_text, Mapping):  # method_options arrive as JSON
            try:
                self.item_text = ItemText.from_options(self.item_text)
            except (ItemTextError, TypeError) as error:
                raise FineTuningError(f"method {self.name!r}: {error}") from error
        if not isinstance(self.item_text, ItemText):
            kind = type(self.item_text).__name__
            raise FineTuningError(f"method {self.name!r}: item_text must be an ItemText or its options, got {kind}")
        if self.max_evals < 1:
            raise FineTuningError(f"method {self.name!r}: max_evals must be at least 1, got {self.max_evals}")
        if self.validation_pool_size < 0:
            raise FineTuningError(
                f"method {self.name!r}: validation_pool_size must be at least 0, got {self.validation_pool_size}"
            )
        if self.search_again_after < 1:
            raise FineTuningError(
                f"method {self.name!r}: search_again_after must be at least 1, got {self.search_again_after}"
            )
        if self.num_epochs < 1:
            raise FineTuningError(f"method {self.name!r}: num_epochs must be at least 1, got {self.num_epochs}")
        self.search_space = {key: as_distribution(self.name, key, value) for key, value in self.search_space.items()}
        known = set(FineTuningParams.model_fields)
        unknown = sorted((set(self.search_space) | set(self.fixed_params)) - known)
        if unknown:
            raise InvalidSearchSpaceError(
                f"method {self.name!r}: {', '.join(map(repr, unknown))} are not FineTuningParams fields "
                f"(known: {', '.join(sorted(known))})"
            )

    def create_loader(self, upserted: UpsertedItems) -> DataLoader:
        """The catalog: the method's loader with the items upserted (or deleted) through the API on top, read from
        ``upserted`` (the ``upserted_items`` table of the caller's database)."""
        from embedding_studio.items.loaders.upserted import WithUpsertedItems

        loader = self.loader.create() if isinstance(self.loader, LoaderConfig) else self.loader()
        return WithUpsertedItems(loader, upserted)

    def create_query_retriever(self) -> Any:
        return self.query_retriever_factory()

    def create_item_set_manager(self) -> ItemSetManager:
        return self.item_set_manager_factory(self.item_text)

    def create_model(self, name_or_path: str | None = None) -> TextEmbeddingModel:
        return self.model_factory(name_or_path or self.base_model)

    def base_params(self) -> dict[str, Any]:
        """The parameters every trial starts from, before the search space overrides some of them."""
        params: dict[str, Any] = {"num_epochs": self.num_epochs, "batch_size": self.batch_size}
        params.update(self.fixed_params)
        if self.loss is not None:
            params.setdefault("loss", self.loss)
        return params


def as_distribution(method_name: str, key: str, value: BaseDistribution | Sequence[Any]) -> BaseDistribution:
    if isinstance(value, BaseDistribution):
        return value
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidSearchSpaceError(
            f"method {method_name!r}: search space entry {key!r} must be an Optuna distribution or a list of "
            f"choices, got {value!r}"
        )
    choices = list(value)
    if not choices:
        raise InvalidSearchSpaceError(f"method {method_name!r}: search space entry {key!r} has no choices")
    return CategoricalDistribution(choices)


def suggest_params(trial: optuna.Trial, method: FineTuningMethod) -> dict[str, Any]:
    """Draws one parameter set: the method's fixed parameters overridden by the trial's suggestions."""
    params = method.base_params()
    for key, distribution in method.search_space.items():
        params[key] = _suggest(trial, key, distribution)
    return params


def _suggest(trial: optuna.Trial, key: str, distribution: BaseDistribution) -> Any:
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(
            key, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(key, distribution.low, distribution.high, step=distribution.step, log=distribution.log)
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(key, distribution.choices)
    raise InvalidSearchSpaceError(f"search space entry {key!r}: unsupported distribution {distribution!r}")


def _plugin_entry_points() -> dict[str, EntryPoint]:
    return {entry_point.name: entry_point for entry_point in entry_points(group=PLUGIN_GROUP)}


def available_methods() -> list[str]:
    return sorted(_plugin_entry_points())


def _accepted_options(factory: Callable[..., Any], options: dict[str, Any]) -> dict[str, Any]:
    """``settings`` is offered to every plugin; one whose factory does not take it simply does not get it."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return options
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()):
        return options
    return {key: value for key, value in options.items() if key in parameters or key != "settings"}


def get_method(name: str, **options: Any) -> FineTuningMethod:
    """Builds the method a plugin provides; ``options`` go to its ``create_plugin`` factory."""
    found = _plugin_entry_points()
    if name not in found:
        raise UnknownMethodError(name, list(found))
    factory = found[name].load()
    accepted = _accepted_options(factory, options)
    method = factory(**accepted)
    if not isinstance(method, FineTuningMethod):
        raise FineTuningError(
            f"plugin {name!r} ({found[name].value}) returned {type(method).__name__}, not a FineTuningMethod"
        )
    return method
