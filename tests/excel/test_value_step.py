"""The preview's value step (issue 15 item 1): values of a choice column that are neither an option nor an alias are
listed per column with their row counts and the closest option; the user's choices make a new preview, are
remembered per user and form, work without JavaScript (plain form posts), and `dangan import` takes them as
`--value 字段:值=选项` (with `--map 列名=字段` for headers). A yes/no column's text that is no spelling of 是/否
(独生/非独生, 有/无) takes the same step, mapped to 是 or 否."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.documents import read_values
from engine.excel.jobs import job_with_values, remembered_values
from engine.excel.limits import Limits
from engine.excel.jobs import run_job
from engine.excel.values import suggest_answer
from tests.excel.helpers import HEADER, errors_of, new_student, preview, principal_of, record_by_id_card, wait_job, xlsx
from tests.excel.test_cli_import import dangan
from tests.excel.test_http import confirm, job_id_of, signed_in, upload, web  # noqa: F401 — the fixture
from tests.support import SCHOOL, add_user
from web.state import AppState

WITH_HEALTH = HEADER + ["健康状况"]
WITH_ONLY_CHILD = HEADER + ["是否独生子女"]


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


# --- yes/no columns ---------------------------------------------------------------------------------------
def _only_child_rows() -> list[dict]:
    return [new_student(是否独生子女="独生"), new_student(是否独生子女="独生"), new_student(是否独生子女="非独生"),
            new_student(是否独生子女="√"), new_student(是否独生子女="不详")]  # √ is a spelling of 是: not listed


@pytest.mark.parametrize("label, text, expected", [
    ("是否独生子女", "独生", "是"), ("是否独生子女", "独生子女", "是"), ("是否独生子女", "是独生子女", "是"),
    ("是否独生子女", "非独生", "否"), ("是否独生子女", "非独生子女", "否"), ("是否住校", "有", "是"),
    ("是否住校", "无", "否"), ("是否住校", "不住校", "否"), ("是否住校", "不详", ""), ("是否住校", "走读", ""),
    ("是否非农业户口", "非农", "是"),  # the label's own 非 is no negation
])
def test_suggest_answer(label: str, text: str, expected: str) -> None:
    assert suggest_answer(label, text) == expected


def test_yes_no__unknown_texts_listed_with_the_answer_suggested(shared: AppState) -> None:
    job = preview(shared, "reg", xlsx(_only_child_rows(), WITH_ONLY_CHILD))
    assert job.count_invalid == 4
    assert sorted(job.details["unknown_values"]["is_only_child"]) == [["不详", 1, ""], ["独生", 2, "是"], ["非独生", 1, "否"]]


def test_yes_no__mapped_to_yes_and_no(shared: AppState) -> None:
    data = _only_child_rows()
    job = preview(shared, "reg", xlsx(data, WITH_ONLY_CHILD))
    form, principal = shared.definitions.forms["student"], principal_of(shared, "reg")
    again = run_job(shared.db, shared.definitions, job_with_values(shared.db, job, principal, form, [
        ("is_only_child", "独生", "是"), ("is_only_child", "非独生", "否"), ("is_only_child", "不详", "")]),
        Limits(), shared.records)
    assert again is not None and (again.count_new, again.count_invalid) == (4, 1), errors_of(shared, again)
    assert again.details["unknown_values"] == {"is_only_child": [["不详", 1, ""]]}


def test_yes_no__not_an_answer__refused(shared: AppState) -> None:
    job = preview(shared, "reg", xlsx(_only_child_rows(), WITH_ONLY_CHILD))
    form, principal = shared.definitions.forms["student"], principal_of(shared, "reg")
    again = run_job(shared.db, shared.definitions, job_with_values(shared.db, job, principal, form, [
        ("is_only_child", "独生", "也许")]), Limits(), shared.records)
    assert again is not None and again.count_invalid == 4  # "也许" is neither 是 nor 否: nothing was chosen


def test_yes_no__over_http(web) -> None:  # type: ignore[no-untyped-def]
    app, state = web
    data = _only_child_rows()[:4]
    with signed_in(app, "reg") as (client, csrf):
        location = upload(client, csrf, xlsx(data, WITH_ONLY_CHILD))
        assert wait_job(state, job_id_of(location)).count_invalid == 3
        page = client.get(location).text
        listing = page.split('id="value-mapping"')[1].split("</section>")[0]
        texts = re.findall(r'name="value_text" value="([^"]*)"', listing)
        assert texts == ["独生", "非独生"] and "是否独生子女" in listing
        assert re.search(r'<option value="是" selected>是（建议）</option>', listing)
        assert re.search(r'<option value="否" selected>否（建议）</option>', listing)
        posted = client.post(location + "/values", data={
            "_csrf": csrf, "value_field": ["is_only_child", "is_only_child"], "value_text": ["独生", "非独生"],
            "value_choice": ["是", "否"]}, follow_redirects=False)
        assert posted.status_code == 303
        second = wait_job(state, job_id_of(posted.headers["location"]))
        assert (second.count_new, second.count_invalid) == (4, 0)
        confirm(client, csrf, posted.headers["location"])
        assert wait_job(state, second.id, ("done",)).count_new == 4
        # Remembered: the next file of this user reads 独生 as 是.
        later = new_student(是否独生子女="独生")
        third = wait_job(state, job_id_of(upload(client, csrf, xlsx([later], WITH_ONLY_CHILD))))
        assert (third.count_new, third.count_invalid) == (1, 0)
    form = state.definitions.forms["student"]
    stored = [read_values(form, record_by_id_card(state, row["身份证号"]).data)["is_only_child"]  # type: ignore[union-attr]
              for row in data]
    assert stored == [True, True, False, True]


def test_command__yes_no_value(shared: AppState, tmp_path: Path) -> None:
    data = _only_child_rows()[:4]
    path = tmp_path / "独生子女.xlsx"
    path.write_bytes(xlsx(data, WITH_ONLY_CHILD))
    add_user(shared, "reg_yes_no", "registrar", SCHOOL)
    named = dangan(shared, tmp_path, "import", "student", str(path), "--user", "reg_yes_no", "--dry-run")
    assert named.returncode == 2
    assert "--value 是否独生子女:独生=是" in named.stdout and "--value 是否独生子女:非独生=否" in named.stdout

    bad = dangan(shared, tmp_path, "import", "student", str(path), "--user", "reg_yes_no", "--value", "是否独生子女:独生=也许")
    assert bad.returncode == 1 and "不是“是否独生子女”的选项" in bad.stderr and "是、否" in bad.stderr

    done = dangan(shared, tmp_path, "import", "student", str(path), "--user", "reg_yes_no",
                  "--value", "是否独生子女:独生=是", "--value", "是否独生子女:非独生=否")
    assert done.returncode == 0, done.stdout + done.stderr
    form = shared.definitions.forms["student"]
    stored = [read_values(form, record_by_id_card(shared, row["身份证号"]).data)["is_only_child"]  # type: ignore[union-attr]
              for row in data]
    assert stored == [True, True, False, True]
