"""Why a certificate action was refused: engine refusals (engine/refusals.py), each a catalogue code and a kind."""
from __future__ import annotations

from engine.issues import Issue
from engine.refusals import Refused


class NotAllowed(Refused):
    code, kind = "cert_not_allowed", "forbidden"


class CertificateNotFound(Refused):
    """Absent, or its record is outside the principal's scope (the same answer)."""

    code, kind = "cert_not_found", "not_found"


class CannotIssue(Refused):
    code, kind = "cert_cannot_issue", "invalid"


class NotValid(Refused):
    code, kind = "cert_not_valid", "conflict"


class ReasonRequired(Refused):
    code, kind = "cert_reason_required", "invalid"


class ReasonTooLong(Refused):
    code, kind = "cert_reason_too_long", "invalid"


class UnitInvalid(Refused):
    code, kind = "cert_unit_invalid", "invalid"


class BatchEmpty(Refused):
    code, kind = "cert_batch_empty", "invalid"


class BatchChanged(Refused):
    code, kind = "cert_batch_changed", "conflict"


class BatchInvalid(Refused):
    code, kind = "cert_batch_invalid", "invalid"
    issues: list[Issue] = []  # the batch form's issues, by field


class KindGone(Refused):
    code, kind = "cert_kind_gone", "conflict"


class FontMissing(Refused):
    """The server lacks the CJK font: not the user's doing."""

    code, kind = "cert_font_missing", "unavailable"


class RateLimited(Refused):
    code, kind = "cert_rate_limited", "limited"
