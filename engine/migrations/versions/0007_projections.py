"""projections: what each form's projection table (p_<form>) holds, so that a definition change can be compared

Revision ID: 0007
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa

revision = '0007'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'projections',
        sa.Column('form_key', sa.String(length=80), nullable=False),
        sa.Column('table_name', sa.String(length=80), nullable=False),
        sa.Column('layout', sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), 'postgresql'), nullable=False),
        sa.Column('rows_version', sa.String(length=40), nullable=False),
        sa.Column('stale', sa.Integer(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('form_key'),
    )
    # The definition-driven expression indexes over records.data are replaced by the projections' own indexes.
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        names = [r[0] for r in bind.execute(sa.text(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'records' AND schemaname = current_schema()"))]
    else:
        names = [r[0] for r in bind.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records'"))]
    for name in names:
        if name.startswith(('ux_', 'dx_')):
            op.execute(f'DROP INDEX IF EXISTS "{name}"')


def downgrade() -> None:
    op.drop_table('projections')
