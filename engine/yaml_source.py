"""YAML loading that remembers where every mapping, key and item came from."""
from __future__ import annotations

from typing import Any

import yaml

from engine.errors import DefinitionError
from engine.spec import Origin


class LocatedDict(dict):
    origin: Origin
    key_origins: dict[str, Origin]  # where each key's value starts
    name_origins: dict[str, Origin]  # where each key itself is written


class LocatedList(list):
    origin: Origin
    item_origins: list[Origin]


def _origin(path: str, node: yaml.Node) -> Origin:
    return Origin(path, node.start_mark.line + 1, node.start_mark.column + 1)


class _Loader(yaml.SafeLoader):
    """SafeLoader (no Python tags) building located containers and catching duplicate keys."""

    def __init__(self, stream: str, path: str, problems: list[DefinitionError]) -> None:
        super().__init__(stream)
        self.path = path
        self.problems = problems

    def construct_located_mapping(self, node: yaml.MappingNode) -> LocatedDict:
        result = LocatedDict()
        result.origin = _origin(self.path, node)
        result.key_origins = {}
        result.name_origins = {}
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                self.problems.append(DefinitionError(_origin(self.path, key_node), "键必须是文本"))
                continue
            key = str(key) if not isinstance(key, str) else key
            if key in result:
                self.problems.append(
                    DefinitionError(
                        _origin(self.path, key_node),
                        f"重复的键“{key}”",
                        f"第一次出现在第 {result.name_origins[key].line} 行",
                    )
                )
                continue
            result[key] = self.construct_object(value_node, deep=True)
            result.key_origins[key] = _origin(self.path, value_node)
            result.name_origins[key] = _origin(self.path, key_node)
        return result

    def construct_located_sequence(self, node: yaml.SequenceNode) -> LocatedList:
        result = LocatedList(self.construct_object(child, deep=True) for child in node.value)
        result.origin = _origin(self.path, node)
        result.item_origins = [_origin(self.path, child) for child in node.value]
        return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _Loader.construct_located_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _Loader.construct_located_sequence)


def load_yaml(text: str, path: str) -> tuple[Any, list[DefinitionError]]:
    """Parse one YAML document; syntax errors come back located, never raised."""
    problems: list[DefinitionError] = []
    loader = _Loader(text, path, problems)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        origin = Origin(path, mark.line + 1, mark.column + 1) if mark else Origin(path, 1, 1)
        reason = exc.problem or exc.context or "无法解析"
        start = exc.context_mark
        if exc.problem and exc.context and start and (not mark or start.line != mark.line):
            # An unclosed quote or bracket fails at the end of the file; say where it was opened.
            reason += f"（{exc.context}，开始于第 {start.line + 1} 行第 {start.column + 1} 列）"
        return None, [DefinitionError(origin, f"YAML 语法错误：{reason}", "检查缩进、冒号后的空格和引号是否成对")]
    except yaml.YAMLError as exc:
        return None, [DefinitionError(Origin(path, 1, 1), f"YAML 语法错误：{exc}")]
    finally:
        loader.dispose()
    return data, problems


def origin_of(data: Any, path: tuple, fallback: Origin, name: bool = False) -> Origin:
    """The origin of the node at a jsonschema-style path (keys and indices), as deep as it exists.

    With `name`, a path ending in a mapping key points at the key itself (an unknown key is fixed there).
    """
    current, best = data, getattr(data, "origin", fallback)
    for index, step in enumerate(path):
        if isinstance(current, LocatedDict) and step in current:
            origins = current.name_origins if name and index == len(path) - 1 else current.key_origins
            best = origins.get(step, best)
            current = current[step]
        elif isinstance(current, LocatedList) and isinstance(step, int) and step < len(current):
            best = current.item_origins[step]
            current = current[step]
        else:
            break
    return best


def key_origin(data: Any, key: str) -> Origin | None:
    """Where `key` itself sits in a located mapping (the value's position, which is what users fix)."""
    if isinstance(data, LocatedDict):
        return data.key_origins.get(key, data.origin)
    return getattr(data, "origin", None)


def name_origin(data: Any, key: str) -> Origin | None:
    """Where `key` itself is written: for a key that is unknown or not allowed, that is what users fix."""
    if isinstance(data, LocatedDict):
        return data.name_origins.get(key, data.origin)
    return getattr(data, "origin", None)


def item_origin(data: Any, key: str, index: int) -> Origin | None:
    """Where item `index` of the list under `key` is written, so a bad entry in a block list gets its own line."""
    items = data.get(key) if isinstance(data, LocatedDict) else None
    if isinstance(items, LocatedList) and index < len(items.item_origins):
        return items.item_origins[index]
    return key_origin(data, key)
