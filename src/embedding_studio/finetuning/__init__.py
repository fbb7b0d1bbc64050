"""Fine-tuning: from a released clickstream batch to the best model in the tracker."""

from embedding_studio.finetuning.errors import (
    BatchNotReleasedError,
    EmptyBatchError,
    FineTuningCanceled,
    FineTuningError,
    NoClicksError,
    TooManyFailedItemsError,
    UnknownBatchError,
    UnknownMethodError,
)
from embedding_studio.finetuning.features import FeatureExtractor, SessionFeatures, estimate_propensities
from embedding_studio.finetuning.fine_tuner import EmbeddingsFineTuner, FitResult, fit_fine_tuner
from embedding_studio.finetuning.losses import InfoNCELoss, MarginRankingLoss, SimilarityBatch, create_loss
from embedding_studio.finetuning.method import FineTuningMethod, LoaderConfig, available_methods, get_method
from embedding_studio.finetuning.params import FineTuningParams
from embedding_studio.finetuning.pipeline import FineTuningResult, run_fine_tuning
from embedding_studio.finetuning.query_retriever import QueryRenderError, QueryRetriever, TextQueryRetriever
from embedding_studio.finetuning.splitter import TooFewQueriesError, TrainTestSplit, TrainTestSplitter

__all__ = [
    "BatchNotReleasedError",
    "EmbeddingsFineTuner",
    "EmptyBatchError",
    "FeatureExtractor",
    "FineTuningCanceled",
    "FineTuningError",
    "FineTuningMethod",
    "FineTuningParams",
    "FineTuningResult",
    "FitResult",
    "InfoNCELoss",
    "LoaderConfig",
    "MarginRankingLoss",
    "NoClicksError",
    "QueryRenderError",
    "QueryRetriever",
    "SessionFeatures",
    "SimilarityBatch",
    "TextQueryRetriever",
    "TooFewQueriesError",
    "TooManyFailedItemsError",
    "TrainTestSplit",
    "TrainTestSplitter",
    "UnknownBatchError",
    "UnknownMethodError",
    "available_methods",
    "create_loss",
    "estimate_propensities",
    "fit_fine_tuner",
    "get_method",
    "run_fine_tuning",
]
