"""Every SQL statement on the ``upserted_items`` table, by name (psycopg's ``%(name)s`` parameters).

The table (migration 0007) holds each item as last upserted or deleted through the API: part of the catalog, on
top of the loader (``items.loaders.upserted``). ``items.upserted_items.UpsertedItems`` runs these; the vector
store's upsert writes it in the transaction that logs the change (``vectordb.store``). A statement that answers
items returns ``UPSERTED_ITEM_COLUMNS``, the columns ``UpsertedItem.from_row`` reads.
"""

from __future__ import annotations

UPSERTED_ITEM_COLUMNS = "item_id, data, payload, deleted"

#: ``ids`` NULL: every item.
SELECT_UPSERTED_ITEMS = f"""
SELECT {UPSERTED_ITEM_COLUMNS} FROM upserted_items
WHERE %(ids)s::text[] IS NULL OR item_id = ANY(%(ids)s::text[])
ORDER BY item_id
"""

#: One item's latest upsert or delete (run with ``executemany``, one item per row).
RECORD_UPSERTED_ITEM = """
INSERT INTO upserted_items (item_id, data, payload, deleted)
VALUES (%(item_id)s, %(data)s, %(payload)s, %(deleted)s)
ON CONFLICT (item_id) DO UPDATE SET data = excluded.data, payload = excluded.payload, deleted = excluded.deleted,
                                    updated_at = now()
"""
