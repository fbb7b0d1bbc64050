"""collections remember what search shows of their items

Revision ID: 0008_collection_item_display
Revises: 0007_item_text_upserted_items

``collections.item_display``: the ``ItemDisplay`` options (the fields copied into each item's display
payload, the title field, the snippet length) a collection was built with, so an item upserted into it
later gets the same kind of payload as its other items. NULL is the default ``ItemDisplay`` (a title-like
field and a 200-character snippet). Collections built before this revision keep the payloads they have
(none for items from a loader) until they are rebuilt.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008_collection_item_display"
down_revision = "0007_item_text_upserted_items"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("collections", sa.Column("item_display", postgresql.JSONB, nullable=True))


def downgrade() -> None:
    op.drop_column("collections", "item_display")
