"""user_records: accounts linked to records (parents to their children's archives), for `scope: linked` roles

Revision ID: 0020
Revises: 0013
"""
from alembic import op
import sqlalchemy as sa

revision = '0020'
down_revision = '0013'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('user_records',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('form_key', sa.String(length=64), nullable=False),
    sa.Column('record_id', BIG_ID, nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['record_id'], ['records.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'form_key', 'record_id')
    )
    op.create_index('ix_user_records_record_id', 'user_records', ['record_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_user_records_record_id', table_name='user_records')
    op.drop_table('user_records')
