"""Excel imports: jobs and the reasons rows were not imported

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('import_jobs',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('form_key', sa.String(length=80), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('username', sa.String(length=80), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('file_kind', sa.String(length=10), nullable=False),
    sa.Column('mode', sa.String(length=10), nullable=False),
    sa.Column('error_mode', sa.String(length=20), nullable=False),
    sa.Column('phase', sa.String(length=10), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('done', sa.Integer(), nullable=False),
    sa.Column('count_new', sa.Integer(), nullable=False),
    sa.Column('count_updated', sa.Integer(), nullable=False),
    sa.Column('count_unchanged', sa.Integer(), nullable=False),
    sa.Column('count_invalid', sa.Integer(), nullable=False),
    sa.Column('last_row', sa.Integer(), nullable=False),
    sa.Column('runner', sa.String(length=80), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('details', JSON_DOC, nullable=False),
    sa.Column('upload_sha256', sa.String(length=64), nullable=False),
    sa.Column('def_version', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('import_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_import_jobs_form', ['form_key', 'id'], unique=False)
        batch_op.create_index('ix_import_jobs_status', ['status'], unique=False)

    op.create_table('import_files',
    sa.Column('job_id', BIG_ID, nullable=False),
    sa.Column('name', sa.String(length=20), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['import_jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'name')
    )
    op.create_table('import_errors',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('job_id', BIG_ID, nullable=False),
    sa.Column('phase', sa.String(length=10), nullable=False),
    sa.Column('row_no', sa.Integer(), nullable=False),
    sa.Column('errors', JSON_DOC, nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['import_jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('import_errors', schema=None) as batch_op:
        batch_op.create_index('ix_import_errors_job', ['job_id', 'phase', 'row_no'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('import_errors', schema=None) as batch_op:
        batch_op.drop_index('ix_import_errors_job')
    op.drop_table('import_errors')
    op.drop_table('import_files')
    with op.batch_alter_table('import_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_import_jobs_status')
        batch_op.drop_index('ix_import_jobs_form')
    op.drop_table('import_jobs')
