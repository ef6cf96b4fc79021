"""handovers: records offered to another unit by an approved workflow until it confirms (升学衔接)

Revision ID: 0030
Revises: 0020
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0030'
down_revision = '0020'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')


def upgrade() -> None:
    op.create_table('handovers',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('form_key', sa.String(length=80), nullable=False),
    sa.Column('record_id', BIG_ID, nullable=False),
    sa.Column('application_id', BIG_ID, nullable=True),
    sa.Column('workflow_key', sa.String(length=80), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('from_unit_id', sa.Integer(), nullable=False),
    sa.Column('from_path', sa.String(length=255), nullable=False),
    sa.Column('from_name', sa.String(length=400), nullable=False),
    sa.Column('to_unit_id', sa.Integer(), nullable=False),
    sa.Column('to_path', sa.String(length=255), nullable=False),
    sa.Column('to_name', sa.String(length=400), nullable=False),
    sa.Column('confirm_role', sa.String(length=80), nullable=False),
    sa.Column('on_confirm', JSON_DOC, nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('sent_by', sa.Integer(), nullable=True),
    sa.Column('sent_name', sa.String(length=100), nullable=False),
    sa.Column('sent_at', sa.DateTime(), nullable=False),
    sa.Column('decided_by', sa.Integer(), nullable=True),
    sa.Column('decided_name', sa.String(length=100), nullable=False),
    sa.Column('decided_at', sa.DateTime(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('placed_unit_id', sa.Integer(), nullable=True),
    sa.Column('placed_name', sa.String(length=400), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_handovers_to', 'handovers', ['to_path', 'status', 'id'], unique=False)
    op.create_index('ix_handovers_from', 'handovers', ['from_path', 'id'], unique=False)
    op.create_index('ix_handovers_record', 'handovers', ['form_key', 'record_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_handovers_record', table_name='handovers')
    op.drop_index('ix_handovers_from', table_name='handovers')
    op.drop_index('ix_handovers_to', table_name='handovers')
    op.drop_table('handovers')
