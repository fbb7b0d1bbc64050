"""Bodies and answers of the clickstream endpoints: defined in ``embedding_studio.schemas.clickstream`` (the client
parses them too, without the server installed) and re-exported here for the routers."""

from embedding_studio.schemas.clickstream import (
    MAX_BULK_RECORDS,
    MAX_EVENTS_PER_REQUEST,
    BatchOut,
    BulkIn,
    BulkOut,
    EventOut,
    EventRecord,
    EventsIn,
    EventsOut,
    IrrelevantOut,
    RejectedRecordOut,
    ReleaseOut,
    SessionBody,
    SessionCreatedOut,
    SessionOut,
    SessionRecord,
)

__all__ = [
    "MAX_BULK_RECORDS",
    "MAX_EVENTS_PER_REQUEST",
    "BatchOut",
    "BulkIn",
    "BulkOut",
    "EventOut",
    "EventRecord",
    "EventsIn",
    "EventsOut",
    "IrrelevantOut",
    "RejectedRecordOut",
    "ReleaseOut",
    "SessionBody",
    "SessionCreatedOut",
    "SessionOut",
    "SessionRecord",
]
