"""YAML loading that remembers where every mapping, key and item came from."""
from __future__ import annotations

import re
from typing import Any, Callable

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


    def construct_as_written(self, node: yaml.ScalarNode) -> str:
        return self.construct_scalar(node)

    def construct_number(self, node: yaml.ScalarNode) -> Any:
        # YAML 1.1 reads 7:30 as the base-60 number 450; nobody writing a definition means that.
        text = self.construct_scalar(node)
        if ":" in text:
            return text
        return self.construct_yaml_float(node) if node.tag.endswith(":float") else self.construct_yaml_int(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _Loader.construct_located_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _Loader.construct_located_sequence)
# An unquoted 2010-03-05 stays the text written: every field type reads dates from text, and a date object
# would fail the shape check of `min`, `max` or an option ("应为数字或文本") for no reason a reader can see.
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_as_written)
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_number)
_Loader.add_constructor("tag:yaml.org,2002:float", _Loader.construct_number)

SYNTAX_HINT = "检查缩进（只能用空格）、冒号后的空格和引号是否成对"

# PyYAML's problems in Chinese, with what usually causes them. The English stays in brackets for anything else.
_TOKENS = {
    "<block mapping start>": "新的键", "<block sequence start>": "列表项“- ”", "<block entry>": "列表项“- ”",
    "<block end>": "上一级的结束", "<scalar>": "文本", "<flow mapping start>": "“{”", "<flow sequence start>": "“[”",
    "<flow mapping end>": "“}”", "<flow sequence end>": "“]”", "<key>": "键", "<value>": "值", "<alias>": "别名“*”",
    "<anchor>": "锚点“&”", "<tag>": "标签“!”", "<document start>": "“---”", "<document end>": "“...”",
    "<stream end>": "文件结尾", "<flow entry>": "“,”",
}
_CONTEXTS = {
    "while scanning a simple key": "这个键", "while parsing a block mapping": "这组键值",
    "while parsing a block collection": "这个列表", "while scanning a quoted scalar": "这段引号中的文本",
    "while parsing a flow sequence": "这个方括号列表", "while parsing a flow mapping": "这个花括号映射",
    "while scanning a block scalar": "这段多行文本", "while parsing a flow node": "这个值",
    "while parsing a block node": "这个值", "while scanning an alias": "这个别名", "while scanning an anchor": "这个锚点",
    "while scanning a tag": "这个标签", "while scanning a plain scalar": "这段文本",
}


def _token(text: str) -> str:
    text = text.strip("'")
    return _TOKENS.get(text, f"“{text}”")


_PROBLEMS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], tuple[str, str]]], ...] = (
    (re.compile(r"mapping values are not allowed here"),
     lambda m: ("这里不能出现“: ”", "值中含有冒号加空格时，请用引号把整个值括起来；也可能是上一行缩进不对")),
    (re.compile(r"could not find expected ':'"),
     lambda m: ("找不到键后面的冒号“:”", "每个键后写“: ”再写值；也可能是上一行的引号没有闭合")),
    (re.compile(r"found character '\\t' that cannot start any token|found a tab character"),
     lambda m: ("缩进中有制表符（Tab）", "YAML 只能用空格缩进，请把 Tab 换成空格")),
    (re.compile(r"found character '(.+)' that cannot start any token"),
     lambda m: (f"字符“{m[1]}”不能出现在值的开头", "以 @、` 等符号开头的值请用引号括起来")),
    (re.compile(r"found unexpected end of stream"),
     lambda m: ("文件在引号或括号闭合之前就结束了", "检查引号和括号是否成对")),
    (re.compile(r"found unknown escape character '(.+)'"),
     lambda m: (f"双引号中有无效的转义“\\{m[1]}”", "正则表达式等含反斜杠的文本请用单引号括起来，如 '^\\d+$'")),
    (re.compile(r"expected <block end>, but found '(.+)'"),
     lambda m: (f"缩进不一致：这里出现了{_token(m[1])}", "同一级的键或列表项要对齐到同一列")),
    (re.compile(r"expected ',' or '([\]}])', but got '(.+)'"),
     lambda m: (f"应为“,”或“{m[1]}”，却出现了{_token(m[2])}", "方括号或花括号中的各项用逗号分隔，含逗号或冒号的项请加引号")),
    (re.compile(r"found undefined alias '?(.+?)'?$"),
     lambda m: (f"未定义的别名“*{m[1]}”", "以 * 开头的值请用引号括起来")),
    (re.compile(r"expected a single document in the stream|but found another document"),
     lambda m: ("一个文件只能有一份定义（不能有第二个“---”）", "把多份定义分别写在不同的文件中")),
    (re.compile(r"expected '<document start>', but found '(.+)'"),
     lambda m: (f"这里不应出现{_token(m[1])}", "检查这一行的缩进和上一行是否完整")),
    (re.compile(r"expected (.+), but found '(.+)'"),
     lambda m: (f"这里应为{_token(m[1])}，却出现了{_token(m[2])}", SYNTAX_HINT)),
)


def syntax_message(problem: str | None, context: str | None) -> tuple[str, str]:
    """PyYAML's problem as a Chinese message and hint."""
    for pattern, render in _PROBLEMS:
        match = pattern.search(problem or "")
        if match:
            return render(match)
    return f"无法解析（{problem or context or 'unknown'}）", SYNTAX_HINT


def load_yaml(text: str, path: str) -> tuple[Any, list[DefinitionError]]:
    """Parse one YAML document; syntax errors come back located, never raised."""
    problems: list[DefinitionError] = []
    loader = _Loader(text, path, problems)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        origin = Origin(path, mark.line + 1, mark.column + 1) if mark else Origin(path, 1, 1)
        reason, hint = syntax_message(exc.problem, exc.context)
        start = exc.context_mark
        if exc.problem and exc.context in _CONTEXTS and start and (not mark or start.line != mark.line):
            # An unclosed quote or bracket fails at the end of the file; say where it was opened.
            reason += f"（{_CONTEXTS[exc.context]}开始于第 {start.line + 1} 行第 {start.column + 1} 列）"
        return None, [DefinitionError(origin, f"YAML 语法错误：{reason}", hint, syntax=True)]
    except yaml.YAMLError as exc:
        return None, [DefinitionError(Origin(path, 1, 1), f"YAML 语法错误：{syntax_message(str(exc), None)[0]}",
                                      SYNTAX_HINT, syntax=True)]
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
