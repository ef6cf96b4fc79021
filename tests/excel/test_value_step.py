"""The preview's value step (issue 15 item 1): values of a choice column that are neither an option nor an alias are
listed per column with their row counts and the closest option; the user's choices make a new preview, are
remembered per user and form, work without JavaScript (plain form posts), and `dangan import` takes them as
`--value 字段:值=选项` (with `--map 列名=字段` for headers)."""
from __future__ import annotations

import re
from pathlib import Path

from engine.documents import read_values
from engine.excel.jobs import job_with_values, remembered_values
from engine.excel.limits import Limits
from engine.excel.jobs import run_job
from tests.excel.helpers import HEADER, errors_of, new_student, preview, principal_of, record_by_id_card, wait_job, xlsx
from tests.excel.test_cli_import import dangan
from tests.excel.test_http import confirm, job_id_of, signed_in, upload, web  # noqa: F401 — the fixture
from tests.support import SCHOOL, add_user
from web.state import AppState

WITH_HEALTH = HEADER + ["健康状况"]


def _rows() -> list[dict]:
    return [new_student(健康状况="很好"), new_student(健康状况="很好"), new_student(健康状况="较差"),
            new_student(健康状况="良好")]  # 良好 is an alias: read as 健康或良好, not listed


def test_preview__unknown_values_listed_with_counts_and_suggestions(shared: AppState) -> None:
    job = preview(shared, "reg", xlsx(_rows(), WITH_HEALTH))
    assert job.count_invalid == 3
    assert job.details["unknown_values"] == {"health": [["很好", 2, "健康或良好"], ["较差", 1, "一般或较弱"]]}


def test_choices__new_preview_reads_them_and_they_are_remembered(shared: AppState) -> None:
    job = preview(shared, "reg", xlsx(_rows(), WITH_HEALTH))
    principal = principal_of(shared, "reg")
    form = shared.definitions.forms["student"]
    again = run_job(shared.db, shared.definitions, job_with_values(shared.db, job, principal, form, [
        ("health", "很好", "健康或良好"), ("health", "较差", "一般")]), Limits(), shared.records)
    assert again is not None and (again.count_new, again.count_invalid) == (4, 0), errors_of(shared, again)
    assert not again.details.get("unknown_values")
    assert remembered_values(shared.db, form, principal) == {"health": {"很好": "健康或良好", "较差": "一般或较弱"}}


def test_choice_left_empty__rows_stay_errors(shared: AppState) -> None:
    job = preview(shared, "reg", xlsx(_rows(), WITH_HEALTH))
    form, principal = shared.definitions.forms["student"], principal_of(shared, "reg")
    again = run_job(shared.db, shared.definitions, job_with_values(shared.db, job, principal, form, [
        ("health", "很好", "健康或良好"), ("health", "较差", "")]), Limits(), shared.records)
    assert again is not None and again.count_invalid == 1
    assert again.details["unknown_values"] == {"health": [["较差", 1, "一般或较弱"]]}


def test_value_step_over_http_without_javascript(web) -> None:  # type: ignore[no-untyped-def]
    app, state = web
    data = _rows()
    with signed_in(app, "reg") as (client, csrf):
        location = upload(client, csrf, xlsx(data, WITH_HEALTH))
        job = wait_job(state, job_id_of(location))
        page = client.get(location).text
        assert job.status == "previewed" and 'id="value-mapping"' in page
        assert re.search(r'<option value="健康或良好" selected>健康或良好（建议）</option>', page)
        assert "很好" in page and ">2<" in page
        posted = client.post(location + "/values", data={
            "_csrf": csrf, "value_field": ["health", "health"], "value_text": ["很好", "较差"],
            "value_choice": ["健康或良好", "一般或较弱"]}, follow_redirects=False)
        assert posted.status_code == 303
        second = wait_job(state, job_id_of(posted.headers["location"]))
        assert (second.count_new, second.count_invalid) == (4, 0)
        assert 'id="value-mapping"' not in client.get(posted.headers["location"]).text
        confirm(client, csrf, posted.headers["location"])
        assert wait_job(state, second.id, ("done",)).count_new == 4
        # The user's next file of this form starts from the choices.
        third = wait_job(state, job_id_of(upload(client, csrf, xlsx([new_student(健康状况="很好")], WITH_HEALTH))))
        assert (third.count_new, third.count_invalid) == (1, 0)
    stored = read_values(state.definitions.forms["student"], record_by_id_card(state, data[0]["身份证号"]).data)  # type: ignore[union-attr]
    assert stored["health"] == "健康或良好"


def test_command__map_and_value_then_remembered(shared: AppState, tmp_path: Path) -> None:
    """A school's file: 家长电话 for 家长联系电话 (a required column: refused without --map) and 很好 in 健康状况."""
    header = ["家长电话" if h == "家长联系电话" else h for h in WITH_HEALTH]
    row = new_student(健康状况="很好")
    row["家长电话"] = row.pop("家长联系电话")
    path = tmp_path / "学校自己的表.xlsx"
    path.write_bytes(xlsx([row], header))
    add_user(shared, "reg_cli", "registrar", SCHOOL)  # a user of its own: its remembered choices are this test's
    refused = dangan(shared, tmp_path, "import", "student", str(path), "--user", "reg_cli")
    assert refused.returncode == 1 and "家长联系电话" in refused.stderr

    bad = dangan(shared, tmp_path, "import", "student", str(path), "--user", "reg_cli", "--value", "健康状况:很好=超级好")
    assert bad.returncode == 1 and "不是“健康状况”的选项" in bad.stderr

    done = dangan(shared, tmp_path, "import", "student", str(path), "--user", "reg_cli",
                  "--map", "家长电话=家长联系电话", "--value", "健康状况:很好=健康")
    assert done.returncode == 0, done.stdout + done.stderr
    record = record_by_id_card(shared, row["身份证号"])
    assert record is not None
    assert read_values(shared.definitions.forms["student"], record.data)["health"] == "健康或良好"

    second = new_student(健康状况="很好")
    second["家长电话"] = second.pop("家长联系电话")
    path.write_bytes(xlsx([second], header))
    again = dangan(shared, tmp_path, "import", "student", str(path), "--user", "reg_cli")  # remembered, both
    assert again.returncode == 0, again.stdout + again.stderr
    assert record_by_id_card(shared, second["身份证号"]) is not None


def test_command__unknown_values_named_with_the_option_to_pass(shared: AppState, tmp_path: Path) -> None:
    path = tmp_path / "a.xlsx"
    path.write_bytes(xlsx([new_student(健康状况="棒极了")], WITH_HEALTH))
    done = dangan(shared, tmp_path, "import", "student", str(path), "--user", "reg", "--dry-run")
    assert done.returncode == 2
    assert "健康状况" in done.stdout and "棒极了" in done.stdout and "--value" in done.stdout
