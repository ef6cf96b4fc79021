"""Why a certificate action was refused: a catalogue code with its parameters and the HTTP status to answer with."""
from __future__ import annotations

from typing import Any

from engine.issues import Issue
from engine.messages import render


class CertificateError(Exception):
    code = ""
    status = 409

    def __init__(self, **params: Any) -> None:
        self.params = params
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return render(Issue(self.code, self.params))


class NotAllowed(CertificateError):
    code, status = "cert_not_allowed", 403


class CertificateNotFound(CertificateError):
    code, status = "cert_not_found", 404


class CannotIssue(CertificateError):
    code, status = "cert_cannot_issue", 422


class NotValid(CertificateError):
    code, status = "cert_not_valid", 409


class ReasonRequired(CertificateError):
    code, status = "cert_reason_required", 422


class ReasonTooLong(CertificateError):
    code, status = "cert_reason_too_long", 422


class UnitInvalid(CertificateError):
    code, status = "cert_unit_invalid", 422


class BatchEmpty(CertificateError):
    code, status = "cert_batch_empty", 422


class BatchChanged(CertificateError):
    code, status = "cert_batch_changed", 409


class BatchInvalid(CertificateError):
    code, status = "cert_batch_invalid", 422
    issues: list[Issue] = []


class KindGone(CertificateError):
    code, status = "cert_kind_gone", 409


class FontMissing(CertificateError):
    code, status = "cert_font_missing", 500


class RateLimited(CertificateError):
    code, status = "cert_rate_limited", 429
