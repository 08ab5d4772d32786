"""The shared strict JSONL reader: objects per line, one-line errors naming the line, U+2028 inside strings kept."""

import json

import pytest

from openrs_cli.errors import DataError
from openrs_cli.jsonl import read_objects


def test_reads_objects_and_keeps_line_separators_inside_strings(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text("\ufeff" + json.dumps({"a": "x\u2028y"}, ensure_ascii=False) + "\n\n" + '{"b": 2}\n', encoding="utf-8")
    assert read_objects(p, "hint") == [{"a": "x\u2028y"}, {"b": 2}]


@pytest.mark.parametrize("content, needle", [
    (b'{"a": 1}\n{"a": \n', "line 2: not valid JSON"),
    (b'{"a": 1}\n[1, 2]\n', "line 2: a list, not a JSON object; hint"),
    (b'{"a": "caf\xe9"}\n', "is not UTF-8 (bad byte at line 1); hint"),
])
def test_errors_name_the_line(tmp_path, content, needle):
    p = tmp_path / "a.jsonl"
    p.write_bytes(content)
    with pytest.raises(DataError, match=needle.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        read_objects(p, "hint")
