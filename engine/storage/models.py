"""Engine tables. Form data lives in `records.data` as a JSON document, so YAML changes need no DDL."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Date, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JsonDoc = JSON().with_variant(JSONB(), "postgresql")
_POSTGRESQL = postgresql.dialect()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


INT32_MAX, INT64_MAX = 2**31 - 1, 2**63 - 1


def holds_id(model: type[Base], value: int) -> bool:
    """Whether `value` fits the model's integer primary key on every database: PostgreSQL refuses to compare an
    INTEGER (32-bit) column with a larger number rather than finding no row."""
    column = model.__table__.primary_key.columns.values()[0]
    wide = isinstance(column.type.dialect_impl(_POSTGRESQL), BigInteger)
    return 0 < value <= (INT64_MAX if wide else INT32_MAX)


class OrgUnit(Base):
    __tablename__ = "org_units"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    level: Mapped[str] = mapped_column(String(40))
    # Materialised path "/1/4/9/" so a subtree is one indexed prefix match.
    path: Mapped[str] = mapped_column(String(400), index=True, default="")


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str] = mapped_column(String(100), default="")
    password_hash: Mapped[str] = mapped_column(String(200))
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # For the password-age policy (web/settings.py: password_max_age_days).
    password_changed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # Where a self-service password reset is sent (either may be empty).
    email: Mapped[str] = mapped_column(String(200), default="")
    phone: Mapped[str] = mapped_column(String(40), default="")
    # TOTP two-factor sign-in (RFC 6238): the base32 secret once enrolled; the one being enrolled; the last time step
    # a code was accepted for (a code is good once).
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_pending: Mapped[str | None] = mapped_column(String(64))
    totp_last_step: Mapped[int] = mapped_column(BigInteger, default=0)
    # Bumped whenever roles or units change, so cached principals of every process go stale at once.
    auth_version: Mapped[int] = mapped_column(Integer, default=1)


class UserRole(Base):
    __tablename__ = "user_roles"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role_key: Mapped[str] = mapped_column(String(80), primary_key=True)


class UserUnit(Base):
    __tablename__ = "user_units"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"), primary_key=True)


class UserRecord(Base):
    """An account linked to records (a parent to their children's archives): a role with `scope: linked` reaches
    these records and the records of the forms that belong to them."""

    __tablename__ = "user_records"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    form_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    record_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), ForeignKey("records.id", ondelete="CASCADE"),
                                           primary_key=True, index=True)


class Session(Base):
    __tablename__ = "sessions"
    # sha256 of the cookie token: a leaked table does not hand out live sessions.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # min(created + lifetime, last activity + idle) — engine/sessions.py
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    # "2fa": the password was right, the second factor is still to come; such a session opens no page.
    pending: Mapped[str | None] = mapped_column(String(10))


class PasswordHistory(Base):
    """Hashes of a user's earlier passwords: a new password may not be one of the last few."""

    __tablename__ = "password_history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class LoginThrottle(Base):
    """Recent failed sign-ins by one key (a client address, or a typed user name whether or not it exists), and
    until when the next try is refused: delays that grow with the failures, never a lock that stays."""

    __tablename__ = "login_throttle"
    # "address:<ip>" or "account:<sha256 of the lower-cased name>" (what was typed is not kept).
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    blocked_until: Mapped[dt.datetime | None] = mapped_column(DateTime)


class ResetCode(Base):
    """A one-time password reset code: sent by e-mail or SMS, or issued by an administrator or registrar."""

    __tablename__ = "reset_codes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))  # sha256: a leaked table gives no usable code
    channel: Mapped[str] = mapped_column(String(10))  # email | sms | issued
    issued_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class RecoveryCode(Base):
    """A one-time code that stands in for the authenticator when it is lost."""

    __tablename__ = "recovery_codes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Record(Base):
    __tablename__ = "records"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    form_key: Mapped[str] = mapped_column(String(80))
    unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"))
    data: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    def_version: Mapped[str] = mapped_column(String(40))
    # Optimistic lock: an update names the revision it started from.
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (
        Index("ix_records_form_unit", "form_key", "unit_id"),
        Index("ix_records_form_created", "form_key", "created_by"),
        # Never reuse a deleted record's id: its history and links must not attach to a newcomer.
        {"sqlite_autoincrement": True},
    )


class AuditEntry(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    form_key: Mapped[str] = mapped_column(String(80))
    record_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    action: Mapped[str] = mapped_column(String(20))
    user_id: Mapped[int | None] = mapped_column(Integer)
    username: Mapped[str] = mapped_column(String(80), default="")
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    # {field: [old, new]} in stored (JSON) form; a delete keeps the whole record as old values.
    changes: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    note: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_audit_record", "form_key", "record_id", "id"), {"sqlite_autoincrement": True})


class Sequence(Base):
    __tablename__ = "sequences"
    scope: Mapped[str] = mapped_column(String(300), primary_key=True)
    last_value: Mapped[int] = mapped_column(BigInteger, default=0)


class ProjectionState(Base):
    """What a form's projection table holds (engine/storage/projection.py): its columns and the version its rows
    are computed from; `stale` counts rows still to recompute after a definition change (0 once refreshed)."""

    __tablename__ = "projections"
    form_key: Mapped[str] = mapped_column(String(80), primary_key=True)
    table_name: Mapped[str] = mapped_column(String(80))
    layout: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    rows_version: Mapped[str] = mapped_column(String(40))
    stale: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Attachment(Base):
    __tablename__ = "attachments"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    form_key: Mapped[str] = mapped_column(String(80))
    record_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), index=True)
    field_key: Mapped[str] = mapped_column(String(80))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(120))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    # In the database, not on disk: one backup of the database holds the whole archive.
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


# --- Workflows ---
_BIG_ID = BigInteger().with_variant(Integer, "sqlite")


class WorkflowVersion(Base):
    """The source of every workflow version an application started with; old versions compile from here."""

    __tablename__ = "wf_versions"
    digest: Mapped[str] = mapped_column(String(40), primary_key=True)
    workflow_key: Mapped[str] = mapped_column(String(80))
    path: Mapped[str] = mapped_column(String(400))
    source: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Application(Base):
    __tablename__ = "wf_applications"
    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True)
    workflow_key: Mapped[str] = mapped_column(String(80))
    version: Mapped[str] = mapped_column(ForeignKey("wf_versions.digest"))
    form_key: Mapped[str] = mapped_column(String(80))
    record_id: Mapped[int] = mapped_column(_BIG_ID)
    subject: Mapped[str] = mapped_column(String(200), default="")  # the record's title when submitted, for lists
    applicant_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    applicant_name: Mapped[str] = mapped_column(String(100), default="")
    # draft | pending | returned | approved | rejected | withdrawn
    status: Mapped[str] = mapped_column(String(20))
    step: Mapped[str] = mapped_column(String(80), default="")
    step_title: Mapped[str] = mapped_column(String(100), default="")
    round: Mapped[int] = mapped_column(Integer, default=1)
    # Bumped by every transition; a transition's UPDATE names the revision it read.
    revision: Mapped[int] = mapped_column(Integer, default=1)
    data: Mapped[dict[str, Any]] = mapped_column(JsonDoc)  # application values, stored (JSON) form
    changes: Mapped[dict[str, Any]] = mapped_column(JsonDoc)  # change requests: {field: [old, new]} stored form
    units: Mapped[dict[str, Any]] = mapped_column(JsonDoc)  # units resolved at submission, by side and level
    chosen_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    record_path: Mapped[str] = mapped_column(String(255), default="", server_default="")  # the record's unit, submitted
    chosen_path: Mapped[str] = mapped_column(String(255), default="", server_default="")  # choose_unit's unit, if any
    # The record's summary fields and unit as submitted, then as decided: what a viewer out of the record's reach sees.
    record_snapshot: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc, nullable=True)

    __table_args__ = (
        Index("ix_wf_app_applicant", "applicant_id", "id"),
        Index("ix_wf_app_record", "form_key", "record_id"),
        Index("ix_wf_app_record_path", "record_path", "id"),
        Index("ix_wf_app_chosen_path", "chosen_path", "id"),
    )


class ApplicationTask(Base):
    """One assignee group of one step: everyone with `role_key` in the unit at `unit_path` (or below) may act."""

    __tablename__ = "wf_tasks"
    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("wf_applications.id", ondelete="CASCADE"), index=True)
    round: Mapped[int] = mapped_column(Integer, default=1)
    step: Mapped[str] = mapped_column(String(80))
    step_title: Mapped[str] = mapped_column(String(100), default="")
    slot: Mapped[int] = mapped_column(Integer, default=0)
    label: Mapped[str] = mapped_column(String(100), default="")
    role_key: Mapped[str] = mapped_column(String(80))
    unit_id: Mapped[int] = mapped_column(Integer)
    unit_path: Mapped[str] = mapped_column(String(400))
    unit_name: Mapped[str] = mapped_column(String(100), default="")
    # The applicant, unless the step allows self-approval: kept out of this task's inbox.
    excluded_user_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | approved | rejected | returned | cancelled
    acted_by: Mapped[int | None] = mapped_column(Integer)
    acted_name: Mapped[str] = mapped_column(String(100), default="")
    acted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    # Covers the inbox, its count and its page of ids, newest first: read from the index, not the table.
    __table_args__ = (Index("ix_wf_tasks_inbox", "status", "role_key", "unit_path", "application_id", "excluded_user_id"),)


class ApplicationAction(Base):
    """The timeline: every submission and decision, who, when, with what comment and attachment."""

    __tablename__ = "wf_actions"
    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("wf_applications.id", ondelete="CASCADE"))
    round: Mapped[int] = mapped_column(Integer, default=1)
    step: Mapped[str] = mapped_column(String(80), default="")
    step_title: Mapped[str] = mapped_column(String(100), default="")
    task_id: Mapped[int | None] = mapped_column(_BIG_ID)
    action: Mapped[str] = mapped_column(String(20))  # submit | resubmit | approve | reject | return | withdraw | effects
    user_id: Mapped[int | None] = mapped_column(Integer)
    username: Mapped[str] = mapped_column(String(80), default="")
    display_name: Mapped[str] = mapped_column(String(100), default="")
    comment: Mapped[str] = mapped_column(Text, default="")
    attachment: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (
        Index("ix_wf_actions_app", "application_id", "id"),
        Index("ix_wf_actions_user", "user_id", "application_id"),
    )


# --- Excel imports ---
class ImportJob(Base):
    """One upload: its preview (dry run), then its import; the stored file lets an interrupted job resume."""

    __tablename__ = "import_jobs"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    form_key: Mapped[str] = mapped_column(String(80))
    user_id: Mapped[int | None] = mapped_column(Integer)
    username: Mapped[str] = mapped_column(String(80), default="")
    filename: Mapped[str] = mapped_column(String(255))
    file_kind: Mapped[str] = mapped_column(String(10))  # xlsx | csv
    mode: Mapped[str] = mapped_column(String(10))  # insert | update | upsert
    error_mode: Mapped[str] = mapped_column(String(20))  # all_or_nothing | skip_invalid
    phase: Mapped[str] = mapped_column(String(10), default="preview")  # preview | commit
    # queued | previewing | previewed | validating | importing | done | rejected | failed
    status: Mapped[str] = mapped_column(String(20), default="queued")
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    count_new: Mapped[int] = mapped_column(Integer, default=0)
    count_updated: Mapped[int] = mapped_column(Integer, default=0)
    count_unchanged: Mapped[int] = mapped_column(Integer, default=0)
    count_invalid: Mapped[int] = mapped_column(Integer, default=0)
    last_row: Mapped[int] = mapped_column(Integer, default=0)  # last row of the last committed batch
    # "host:pid" of the process running the job; with updated_at (touched every batch) it tells a live
    # run from one a stopped or killed process left behind.
    runner: Mapped[str] = mapped_column(String(80), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)  # warnings, duplicates, header row
    upload_sha256: Mapped[str] = mapped_column(String(64))
    def_version: Mapped[str] = mapped_column(String(40), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    __table_args__ = (
        Index("ix_import_jobs_form", "form_key", "id"),
        Index("ix_import_jobs_status", "status"),
    )


class ImportFile(Base):
    """The stored upload ("upload") and the built error workbook ("errors") of a job.

    Kept out of `import_jobs`: SQLite rewrites a whole row on UPDATE, and the job row is updated after
    every batch."""

    __tablename__ = "import_files"
    job_id: Mapped[int] = mapped_column(ForeignKey("import_jobs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(20), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ImportRowError(Base):
    """The reasons one uploaded row was not imported, per phase; the error workbook is built from these."""

    __tablename__ = "import_errors"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("import_jobs.id", ondelete="CASCADE"))
    phase: Mapped[str] = mapped_column(String(10))
    row_no: Mapped[int] = mapped_column(Integer)
    # [[column index or null, label, value as uploaded, message], ...]
    errors: Mapped[list[Any]] = mapped_column(JsonDoc)

    __table_args__ = (Index("ix_import_errors_job", "job_id", "phase", "row_no"),)


# --- Backups ---
class BackupRun(Base):
    """One backup archive written (by `dangan backup` or the schedule): where, how big, what it counted, and whether
    reading it back matched. The admin overview shows the latest; the schedule reads when the last one ran."""

    __tablename__ = "backups"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # scheduled | manual | before_restore
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    file: Mapped[str] = mapped_column(String(1000), default="")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    counts: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)  # the manifest's counts
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    message: Mapped[str] = mapped_column(Text, default="")  # why it failed, or what was left out
    runner: Mapped[str] = mapped_column(String(80), default="")  # "host:pid" of the process that wrote it

    __table_args__ = (Index("ix_backups_kind_started", "kind", "started_at"),)
# --- Certificates ---
class Certificate(Base):
    """One issued certificate: its number, the signed content as issued, and how it ended (revoked or reissued).

    A number is never reused: rows are never deleted, and `number` is unique. `live_key` ("<kind>:<record id>") is
    set while the certificate is the record's current one (valid or revoked), NULL once a reissue replaced it, so
    that a record holds at most one current certificate of a kind, whatever two transactions do at once."""

    __tablename__ = "certificates"
    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(80))  # the certificate definition's key
    number: Mapped[str] = mapped_column(String(80), unique=True)
    form_key: Mapped[str] = mapped_column(String(80))
    # No foreign key: the certificate and its content outlive a deleted record.
    record_id: Mapped[int] = mapped_column(_BIG_ID)
    live_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    status: Mapped[str] = mapped_column(String(20))  # valid | revoked | replaced
    # The canonical JSON text that is signed, exactly as issued (signatures are made over these bytes).
    content: Mapped[str] = mapped_column(Text)
    holder: Mapped[str] = mapped_column(String(100), default="")  # the holder's name, masked on the public page
    school: Mapped[str] = mapped_column(String(100), default="")
    photo: Mapped[str | None] = mapped_column(String(32))  # attachment id of the photo as issued
    application_id: Mapped[int | None] = mapped_column(_BIG_ID)  # the approval that issued it
    replaces_id: Mapped[int | None] = mapped_column(_BIG_ID)  # the certificate this one reissues (补发)
    issued_on: Mapped[dt.date] = mapped_column(Date)
    issued_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    issued_by: Mapped[int | None] = mapped_column(Integer)
    issued_name: Mapped[str] = mapped_column(String(100), default="")
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    ended_by: Mapped[int | None] = mapped_column(Integer)
    ended_name: Mapped[str] = mapped_column(String(100), default="")
    end_reason: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_certificates_record", "form_key", "record_id", "id"),)


class VerifyWindow(Base):
    """Public certificate look-ups per client address in the current fixed window: in the database, so that every
    worker process counts against the same limit."""

    __tablename__ = "verify_windows"
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    period: Mapped[int] = mapped_column(BigInteger)  # seconds since the epoch // the period's length
    hits: Mapped[int] = mapped_column(Integer, default=0)


# --- Handovers (升学衔接) ---
class Handover(Base):
    """A record offered to another unit by an approved workflow (`on_approve.hand_over`): pending until a holder of
    `confirm_role` there confirms (the record and its child records move there) or declines it with a reason. Rows
    are never deleted: the sending unit's record of what it sent, and the receiving unit's of what it took."""

    __tablename__ = "handovers"
    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True)
    form_key: Mapped[str] = mapped_column(String(80))
    record_id: Mapped[int] = mapped_column(_BIG_ID)  # no foreign key: the log outlives a deleted record
    application_id: Mapped[int | None] = mapped_column(_BIG_ID)
    workflow_key: Mapped[str] = mapped_column(String(80), default="")
    subject: Mapped[str] = mapped_column(String(200), default="")  # the record's title when sent
    from_unit_id: Mapped[int] = mapped_column(Integer)
    from_path: Mapped[str] = mapped_column(String(255))
    from_name: Mapped[str] = mapped_column(String(400), default="")
    to_unit_id: Mapped[int] = mapped_column(Integer)
    to_path: Mapped[str] = mapped_column(String(255))
    to_name: Mapped[str] = mapped_column(String(400), default="")
    confirm_role: Mapped[str] = mapped_column(String(80))
    on_confirm: Mapped[dict[str, Any]] = mapped_column(JsonDoc)  # {field: stored value} set on confirmation
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending | confirmed | declined
    sent_by: Mapped[int | None] = mapped_column(Integer)
    sent_name: Mapped[str] = mapped_column(String(100), default="")
    sent_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    decided_by: Mapped[int | None] = mapped_column(Integer)
    decided_name: Mapped[str] = mapped_column(String(100), default="")
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    reason: Mapped[str] = mapped_column(Text, default="")  # why it was declined, or the confirmation's remark
    placed_unit_id: Mapped[int | None] = mapped_column(Integer)
    placed_name: Mapped[str] = mapped_column(String(400), default="")

    __table_args__ = (
        Index("ix_handovers_to", "to_path", "status", "id"),
        Index("ix_handovers_from", "from_path", "id"),
        Index("ix_handovers_record", "form_key", "record_id"),
    )
