"""Reading definition files: UTF-8 text → located YAML → shape check, every problem collected."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import DefinitionError
from engine.metaschema import check_shape
from engine.spec import Origin
from engine.yaml_source import LocatedDict, load_yaml


@dataclass(frozen=True)
class DefinitionFile:
    shown: str  # the path as error messages show it
    text: str  # the source, which workflows keep as the snapshot in-flight applications run on
    data: LocatedDict


def display_path(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def read_definition_files(directory: Path, pattern: str, schema: dict, problems: list[DefinitionError],
                          rejected: list[Any] | None = None) -> list[DefinitionFile]:
    """Parse and shape-check every file matching `pattern`; return those that passed (the rest go to `rejected`)."""
    good = []
    for file in sorted(directory.glob(pattern)):
        shown = display_path(file)
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            problems.append(DefinitionError(Origin(shown, 1, 1), "文件不是 UTF-8 编码", "用 UTF-8 编码保存该文件", syntax=True))
            continue
        data, found = load_yaml(text, shown)
        problems.extend(found)
        if not isinstance(data, LocatedDict):
            if not found:
                message = "文件是空的" if data is None else "文件的顶层应为键值映射（key: value）"
                problems.append(DefinitionError(Origin(shown, 1, 1), message))
            continue
        shape = check_shape(data, schema, shown)
        problems.extend(shape)
        if not shape:
            good.append(DefinitionFile(shown, text, data))
        elif rejected is not None:
            rejected.append(data)
    return good
