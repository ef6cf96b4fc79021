"""workflows: versions, applications, tasks, actions

Revision ID: 0003
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0001'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('wf_versions',
    sa.Column('digest', sa.String(length=40), nullable=False),
    sa.Column('workflow_key', sa.String(length=80), nullable=False),
    sa.Column('path', sa.String(length=400), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('digest')
    )
    op.create_table('wf_applications',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('workflow_key', sa.String(length=80), nullable=False),
    sa.Column('version', sa.String(length=40), nullable=False),
    sa.Column('form_key', sa.String(length=80), nullable=False),
    sa.Column('record_id', BIG_ID, nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('applicant_id', sa.Integer(), nullable=False),
    sa.Column('applicant_name', sa.String(length=100), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('step', sa.String(length=80), nullable=False),
    sa.Column('step_title', sa.String(length=100), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('data', JSON_DOC, nullable=False),
    sa.Column('changes', JSON_DOC, nullable=False),
    sa.Column('units', JSON_DOC, nullable=False),
    sa.Column('chosen_unit_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['applicant_id'], ['users.id'], ),
    sa.ForeignKeyConstraint(['chosen_unit_id'], ['org_units.id'], ),
    sa.ForeignKeyConstraint(['version'], ['wf_versions.digest'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_wf_app_applicant', 'wf_applications', ['applicant_id', 'id'], unique=False)
    op.create_index('ix_wf_app_record', 'wf_applications', ['form_key', 'record_id'], unique=False)
    op.create_table('wf_tasks',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('application_id', BIG_ID, nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('step', sa.String(length=80), nullable=False),
    sa.Column('step_title', sa.String(length=100), nullable=False),
    sa.Column('slot', sa.Integer(), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=False),
    sa.Column('role_key', sa.String(length=80), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.Column('unit_path', sa.String(length=400), nullable=False),
    sa.Column('unit_name', sa.String(length=100), nullable=False),
    sa.Column('excluded_user_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('acted_by', sa.Integer(), nullable=True),
    sa.Column('acted_name', sa.String(length=100), nullable=False),
    sa.Column('acted_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['application_id'], ['wf_applications.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_wf_tasks_application_id', 'wf_tasks', ['application_id'], unique=False)
    op.create_index('ix_wf_tasks_inbox', 'wf_tasks', ['status', 'role_key', 'unit_path', 'application_id', 'excluded_user_id'], unique=False)
    op.create_table('wf_actions',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('application_id', BIG_ID, nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('step', sa.String(length=80), nullable=False),
    sa.Column('step_title', sa.String(length=100), nullable=False),
    sa.Column('task_id', BIG_ID, nullable=True),
    sa.Column('action', sa.String(length=20), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('username', sa.String(length=80), nullable=False),
    sa.Column('display_name', sa.String(length=100), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('attachment', JSON_DOC, nullable=True),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['application_id'], ['wf_applications.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_wf_actions_app', 'wf_actions', ['application_id', 'id'], unique=False)
    op.create_index('ix_wf_actions_user', 'wf_actions', ['user_id', 'application_id'], unique=False)


def downgrade() -> None:
    op.drop_table('wf_actions')
    op.drop_table('wf_tasks')
    op.drop_table('wf_applications')
    op.drop_table('wf_versions')
