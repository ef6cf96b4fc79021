"""`dangan import FORM FILE --user NAME`: the same job as the web's import (preview, then import), run in this process."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from engine.excel.jobs import (MODE_NAMES, modes_for, STATUS_NAMES, create_job, error_workbook, first_look, queue_commit,
                               remembered_mapping, remembered_values, run_job)
from engine.excel.layout import UNIT_KEY, header_text, key_lookup
from engine.excel.values import merge_chosen, value_kinds
from engine.excel.limits import FileRejected
from engine.org import build_principal
from engine.permissions import can
from engine.records import RecordService
from engine.storage.db import Database
from engine.storage.models import ImportJob, User
from web.commands import definitions_for_command, prepare_database
from web.settings import Settings


class ProgressBar:
    """The import's progress on stderr, one bar per phase (预检, 导入), drawn by rich."""

    def __init__(self, stream: Any) -> None:
        # Imported here, as the PDF libraries are (web/certificates.py): rich would add to every server worker's start.
        from rich.console import Console  # noqa: PLC0415
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn  # noqa: PLC0415

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                 MofNCompleteColumn(), TextColumn("行"), console=Console(file=stream))
        self.tasks: dict[str, Any] = {}

    def __call__(self, status: str, done: int, total: int) -> None:
        if status not in self.tasks:
            self.progress.start()
            self.tasks[status] = self.progress.add_task(STATUS_NAMES.get(status, status), total=total)
        self.progress.update(self.tasks[status], completed=done, total=total)

    def end(self) -> None:
        self.progress.stop()
        for task in self.tasks.values():  # a second run (the import after its preview) draws only its own bar
            self.progress.remove_task(task)
        self.tasks.clear()


def command_import(args: Any, out: Any, err: Any) -> int:
    """Preview, then (unless --dry-run) import; 0 all imported, 2 some rows invalid, 1 refused or failed."""
    settings = Settings()
    definitions = definitions_for_command(settings, err)
    if definitions is None:
        return 1
    form = definitions.forms.get(args.form)
    if form is None:
        print(f"没有表单“{args.form}”；可用：{'、'.join(definitions.forms)}", file=err)
        return 1
    db = Database(settings.database_url, timeouts=settings.database_timeouts())
    try:
        return _run(args, settings, definitions, form, db, out, err)
    finally:
        db.dispose()


def _run(args: Any, settings: Settings, definitions: Any, form: Any, db: Database, out: Any, err: Any) -> int:
    prepare_database(db, definitions)
    with db.read() as s:
        user = s.scalar(select(User).where(User.username == args.user))
        principal = build_principal(s, user, definitions) if user is not None and user.is_active else None
    if principal is None or not can(principal, "import", form):
        print(f"用户“{args.user}”不存在、已停用或没有导入“{form.title}”的权限", file=err)
        return 1
    modes = modes_for(principal, form)
    if args.mode not in modes:
        print(f"用户“{args.user}”不能以“{MODE_NAMES[args.mode]}”方式导入；可用：{'、'.join(MODE_NAMES[m] for m in modes)}", file=err)
        return 1
    path, limits = Path(args.file), settings.command_import_limits(args.no_size_limit)
    given, problems = _given(form, getattr(args, "map", None) or [], getattr(args, "value", None) or [])
    if problems:
        for problem in problems:
            print(problem, file=err)
        return 1
    mapping = remembered_mapping(db, form, principal) | given[0]
    values = merge_chosen(remembered_values(db, form, principal), given[1], form)
    try:
        look = first_look(path, path.name, form, limits, mapping)
    except FileRejected as exc:
        print(f"文件被拒绝：{exc.message}", file=err)
        return 1
    except OSError as exc:
        print(f"无法读取文件：{exc}", file=err)
        return 1
    error_mode = "skip_invalid" if args.skip_invalid else "all_or_nothing"
    sheet, others = look.sheet, look.others
    if args.sheet:
        if args.sheet not in (look.sheet, *look.others):
            print(f"工作表“{args.sheet}”不存在或没有表头和数据；可导入：{'、'.join((look.sheet, *look.others))}", file=err)
            return 1
        sheet, others = args.sheet, tuple(n for n in (look.sheet, *look.others) if n != args.sheet)
    if others:
        print(f"文件中另有工作表 {'、'.join(others)} 也带有表头和数据；这次只导入工作表“{sheet}”（用 --sheet 选择）", file=out)
    job_id = create_job(db, form, principal, path.name, path.read_bytes(), look.kind, args.mode, error_mode, sheet, others,
                        mapping, values)
    bar, records = ProgressBar(err), RecordService(db, lambda: definitions.forms)
    job = run_job(db, definitions, job_id, limits, records, progress=bar)
    bar.end()
    assert job is not None
    _report(job, "预览", out)
    _report_values(job, form, out)
    if job.status != "previewed":
        print(job.message, file=err)
        return 1
    if not args.dry_run:
        queue_commit(db, job_id, error_mode, checked_now=True)  # its preview was the check: not run twice
        job = run_job(db, definitions, job_id, limits, records, progress=bar)
        bar.end()
        assert job is not None
        _report(job, "导入", out)
        if job.message:
            print(job.message, file=err)
    if job.count_invalid:
        data = error_workbook(db, definitions, job_id, limits)
        if data is not None:
            target = Path.cwd() / f"{path.stem}-错误报告.xlsx"
            target.write_bytes(data)
            print(f"错误报告已保存到 {target}", file=out)
    if job.status in ("rejected", "failed"):
        return 1
    return 2 if job.count_invalid else 0


def _given(form: Any, maps: list[str], values: list[str]) -> tuple[tuple[dict[str, str], list[tuple[str, str, str]]], list[str]]:
    """`--map 班级=所属班级` (a header → a field's label or key; nothing after "=" ignores the column) and
    `--value 健康状况:很好=健康` (a field, a value as in the file → an option's label, value or alias; for a yes/no
    field 是 or 否: `--value 是否独生子女:独生=是`)."""
    names, kinds = key_lookup(form), value_kinds(form)
    mapping: dict[str, str] = {}
    chosen: list[tuple[str, str, str]] = []
    problems: list[str] = []

    def field_key(text: str) -> str | None:
        text = text.strip()
        return text if text in form.fields else names.get(header_text(text))

    for item in maps:
        header, sep, target = item.partition("=")
        key = field_key(target) if target.strip() else ""
        if not sep or not header.strip() or key is None:
            problems.append(f"--map “{item}”：应写成“文件中的列名=字段名”，字段名如 {form.unit_label}、"
                            f"{'、'.join(f.label for f in list(form.fields.values())[:3])}")
            continue
        mapping[header.strip()] = key
    for item in values:
        field_text, sep, rest = item.replace("：", ":", 1).partition(":")
        text, eq, option = rest.partition("=")
        key = field_key(field_text)
        kind = kinds.get(key or "")
        if not sep or not eq or not text.strip() or kind is None or key == UNIT_KEY:
            problems.append(f"--value “{item}”：应写成“选择或是/否字段:文件中的值=选项”，如 "
                            f"{next((form.fields[k].label for k in kinds), '字段')}:很好={next(iter(kinds.values())).options[0].label if kinds else '选项'}")
            continue
        if kind.resolve(option.strip()) is None:
            problems.append(f"--value “{item}”：“{option.strip()}”不是“{form.fields[key].label}”的选项；可选："  # type: ignore[index]
                            f"{'、'.join(o.label for o in kind.options)}")
            continue
        chosen.append((key, text.strip(), option.strip()))  # type: ignore[arg-type]
    return (mapping, chosen), problems


def _report(job: ImportJob, what: str, out: Any) -> None:
    if job.status == "aborted":  # nothing was written: say so before any count
        print(f"{what}（任务 #{job.id}，{STATUS_NAMES[job.status]}）：没有导入任何数据。检查结果：可新增 {job.count_new}，"
              f"可更新 {job.count_updated}，未变 {job.count_unchanged}，错误 {job.count_invalid}", file=out)
        return
    print(f"{what}（任务 #{job.id}，{STATUS_NAMES[job.status]}）：新增 {job.count_new}，更新 {job.count_updated}，"
          f"未变 {job.count_unchanged}，错误 {job.count_invalid}", file=out)
    for warning in (job.details or {}).get("warnings", []):
        print(f"  提示：{warning}", file=out)


def _report_values(job: ImportJob, form: Any, out: Any) -> None:
    """Values of choice and yes/no columns that are no option: each with its rows and the option to pass with --value."""
    kinds = value_kinds(form)
    for key, entries in ((job.details or {}).get("unknown_values") or {}).items():
        if key not in kinds:
            continue
        label = form.fields[key].label
        for text, count, suggested in entries:
            option = kinds[key].label_of(suggested) if suggested else "选项"
            print(f"  “{label}”中的“{text}”（{count} 行）不是选项；如指的是“{option}”，加上 --value {label}:{text}={option}",
                  file=out)
