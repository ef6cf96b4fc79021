"""Excel and CSV: generated import templates and exports, and safe, streaming, resumable imports.

Stages: `safety` checks the upload before any parser sees it → `reader` streams rows (xlsx through
python-calamine in a memory-capped child process, CSV in-process) → `layout` maps the header to
fields → `importer` converts cells with each field type's `from_cell` and validates every row with
the one validator (`clean_record`), then writes in batches → `jobs` keeps the background job and its
progress; `workbooks` writes templates, exports and error workbooks with openpyxl.
"""
