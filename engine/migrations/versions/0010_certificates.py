"""certificates: issued certificates and the public look-up limit per address

Revision ID: 0010
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa

revision = '0010'
down_revision = '0008'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('certificates',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('kind', sa.String(length=80), nullable=False),
    sa.Column('number', sa.String(length=80), nullable=False),
    sa.Column('form_key', sa.String(length=80), nullable=False),
    sa.Column('record_id', BIG_ID, nullable=False),
    sa.Column('live_key', sa.String(length=120), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('holder', sa.String(length=100), nullable=False),
    sa.Column('school', sa.String(length=100), nullable=False),
    sa.Column('photo', sa.String(length=32), nullable=True),
    sa.Column('application_id', BIG_ID, nullable=True),
    sa.Column('replaces_id', BIG_ID, nullable=True),
    sa.Column('issued_on', sa.Date(), nullable=False),
    sa.Column('issued_at', sa.DateTime(), nullable=False),
    sa.Column('issued_by', sa.Integer(), nullable=True),
    sa.Column('issued_name', sa.String(length=100), nullable=False),
    sa.Column('ended_at', sa.DateTime(), nullable=True),
    sa.Column('ended_by', sa.Integer(), nullable=True),
    sa.Column('ended_name', sa.String(length=100), nullable=False),
    sa.Column('end_reason', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('number'),
    sa.UniqueConstraint('live_key'),
    )
    op.create_index('ix_certificates_record', 'certificates', ['form_key', 'record_id', 'id'], unique=False)
    op.create_table('verify_windows',
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('period', sa.BigInteger(), nullable=False),
    sa.Column('hits', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('address'),
    )


def downgrade() -> None:
    op.drop_table('verify_windows')
    op.drop_table('certificates')
