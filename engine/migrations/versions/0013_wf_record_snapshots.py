"""wf record snapshots: an application keeps its record's unit path (list filters by unit) and the record's summary
fields as submitted and as decided (shown to viewers the record is now out of reach for)

Revision ID: 0013
Revises: 0010
"""
import json

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0013'
down_revision = '0010'
branch_labels = None
depends_on = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.add_column('wf_applications', sa.Column('record_path', sa.String(length=255), nullable=False, server_default=''))
    op.add_column('wf_applications', sa.Column('record_snapshot', JSON_DOC, nullable=True))
    op.add_column('wf_applications', sa.Column('chosen_path', sa.String(length=255), nullable=False, server_default=''))
    op.create_index('ix_wf_app_record_path', 'wf_applications', ['record_path', 'id'], unique=False)
    op.create_index('ix_wf_app_chosen_path', 'wf_applications', ['chosen_path', 'id'], unique=False)
    # The unit path of applications made before: the deepest record unit of the units fixed at submission.
    bind = op.get_bind()
    table = sa.table('wf_applications', sa.column('id', sa.BigInteger()), sa.column('units', JSON_DOC),
                     sa.column('record_path', sa.String()), sa.column('chosen_path', sa.String()))
    for row in bind.execute(sa.select(table.c.id, table.c.units)).all():
        units = row.units if isinstance(row.units, dict) else json.loads(row.units or "{}")
        paths = {side: [triple[1] for triple in (units.get(side) or {}).values()] for side in ('record_unit', 'chosen_unit')}
        found = {column: max(paths[side], key=len) for side, column in (('record_unit', 'record_path'), ('chosen_unit', 'chosen_path'))
                 if paths[side]}
        if found:
            bind.execute(table.update().where(table.c.id == row.id).values(**found))


def downgrade() -> None:
    op.drop_index('ix_wf_app_chosen_path', table_name='wf_applications')
    op.drop_index('ix_wf_app_record_path', table_name='wf_applications')
    op.drop_column('wf_applications', 'chosen_path')
    op.drop_column('wf_applications', 'record_snapshot')
    op.drop_column('wf_applications', 'record_path')
