"""After a definition adds a required field, the completeness report shows, per unit, how many records lack it."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.reports.service import ReportService
from tests.engine.helpers import BACKENDS, add_member, database_url, principal_of, student_values
from tests.support import CLASS_1, CLASS_2, DISTRICT, build, copy_definitions, unit_id

NEW_FIELD = """\
      - key: hobby
        label: 爱好
        type: text
        required: true
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_new_required_field__counted_missing_per_class(backend: str, tmp_path: Path) -> None:
    definitions = copy_definitions(tmp_path / "definitions")
    with database_url(backend, tmp_path) as url:
        _app, state = build(url, definitions=definitions, tmp=tmp_path)
        add_member(state, "admin1", "sysadmin", DISTRICT)
        admin, form = principal_of(state, "admin1"), state.definitions.forms["student"]
        for serial, path in enumerate([CLASS_1, CLASS_1, CLASS_2], start=1):
            values = {k: v for k, v in student_values(serial).items() if k in form.fields}
            assert state.records.create(form, admin, unit_id(state, path), values).ok
        before = ReportService(state.db, state.records).run(state.definitions, admin, "completeness_student", {})
        assert before.total == {"count": 3} and before.column_totals[("incomplete",)]["count"] == 0
        state.db.dispose()

        student = definitions / "forms" / "student.yaml"
        student.write_text(student.read_text(encoding="utf-8").replace("\nrules:", "\n" + NEW_FIELD + "\nrules:"), encoding="utf-8")
        _app, state = build(url, definitions=definitions, tmp=tmp_path)
        admin = principal_of(state, "admin1")
        after = ReportService(state.db, state.records).run(state.definitions, admin, "completeness_student", {})
        missing = {row.label: after.cell(row, next(c for c in after.columns if c.key == ("hobby",)))["count"] for row in after.rows}
        assert missing == {"高一(1)班": 2, "高一(2)班": 1}
        assert after.column_totals[("incomplete",)]["count"] == 3
        assert after.column_totals[("hobby",)]["share"] == 0
        state.db.dispose()
