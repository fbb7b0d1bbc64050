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
from embedding_studio.finetuning.method import FineTuningMethod, LoaderConfig, available_methods, get_method
from embedding_studio.finetuning.pipeline import FineTuningResult, run_fine_tuning
