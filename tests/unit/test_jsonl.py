"""openrs_cli.jsonl: the strict reader (one-line errors naming the line, U+2028 inside strings kept), the log reader's
torn-line policy, the appender, and that no module of the package reads or appends JSONL another way."""

import ast
import json
import os
from pathlib import Path

import pytest

from openrs_cli import jsonl
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


# --- the one module: its policies, and no second reader or appender elsewhere in the package ---


def test_read_log_leaves_out_a_torn_last_line_and_counts_other_bad_lines(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_bytes(b'{"a": 1}\nnot json\n[1]\n{"a": 2}\n{"a": 3, "cut')
    log = jsonl.read_log(p)
    assert [r["a"] for r in log.records] == [1, 2] and log.lines == [1, 4]
    assert log.bad == [2, 3] and log.torn == 5
    assert log.notes("log") == ["log: skipped unreadable line 2", "log: skipped unreadable line 3",
                                "log: skipped truncated last line 5 (interrupted write)"]
    p.write_bytes(b'{"a": 1}\nnot json\n')  # a bad line with a newline after it is not torn
    assert jsonl.read_log(p).bad == [2] and not jsonl.read_log(p).torn
    assert jsonl.read_log(tmp_path / "missing.jsonl").records == []


def test_strict_reader_refuses_a_torn_tail_unless_told(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'{"a": 1}\n{"a": 2, "cu')
    with pytest.raises(DataError, match="line 2: not valid JSON"):
        read_objects(p, "hint")
    assert read_objects(p, "hint", torn_tail_ok=True) == [{"a": 1}]


def test_appender_cuts_a_torn_tail_and_writes_whole_lines(tmp_path):
    p = tmp_path / "g.jsonl"
    p.write_bytes(b'{"a": 1}\n{"a": 2, "cu')
    with jsonl.Appender(p) as out:
        out.append([{"a": 3}, {"a": "\u2028"}])
        out.append([])
    assert p.read_bytes().endswith(b"\n")
    assert [r["a"] for r in jsonl.read_log(p).records] == [1, 3, "\u2028"] and not jsonl.read_log(p).torn


def test_shared_appender_ends_a_torn_tail_instead_of_cutting_it(tmp_path):
    p = tmp_path / "ledger.jsonl"
    p.write_bytes(b'{"a": 1}\n{"a": 2, "cu')
    with jsonl.Appender(p, torn_tail="end") as out:
        out.append([{"a": 3}])
    log = jsonl.read_log(p)
    assert [r["a"] for r in log.records] == [1, 3] and log.bad == [2]  # the fragment stays, on its own line


def test_tail_returns_only_complete_new_lines(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"step": 0}\n')
    tail = jsonl.Tail(p)
    assert tail.read() == []
    with open(p, "a") as f:
        f.write('{"step": 1}\n{"step": 2, "lo')
    assert tail.read() == [{"step": 1}]
    with open(p, "a") as f:
        f.write('ss": 0.5}\n')
    assert tail.read() == [{"step": 2, "loss": 0.5}]


def test_write_all_replaces_the_file(tmp_path):
    p = tmp_path / "w.jsonl"
    p.write_text("old\n")
    jsonl.write_all(p, [{"x": float("nan")}, {"y": "é"}])
    assert p.read_text(encoding="utf-8") == '{"x": NaN}\n{"y": "é"}\n'
    assert not [q for q in tmp_path.iterdir() if q.name.endswith(".tmp")]


PACKAGE = Path(jsonl.__file__).parent


def _jsonl_handling(tree: ast.AST) -> list[str]:
    """Line-by-line JSON reading (json.loads in a loop or comprehension), appending (open(..., "a"), O_APPEND)
    and line writing (json.dumps(...) + "\\n") found in one module."""
    found = []

    def is_loads(n):
        return isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "loads" \
            and isinstance(n.func.value, ast.Name) and n.func.value.id == "json"

    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.While, ast.ListComp, ast.GeneratorExp, ast.SetComp, ast.DictComp)):
            if any(is_loads(n) for n in ast.walk(node)):
                found.append(f"line {node.lineno}: json.loads in a loop")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open":
            modes = [a for a in node.args[1:2]] + [k.value for k in node.keywords if k.arg == "mode"]
            if any(isinstance(m, ast.Constant) and "a" in str(m.value) for m in modes):
                found.append(f"line {node.lineno}: open() for appending")
        if isinstance(node, ast.Attribute) and node.attr == "O_APPEND":
            found.append(f"line {node.lineno}: os.O_APPEND")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and isinstance(node.left, ast.Call) \
                and isinstance(node.left.func, ast.Attribute) and node.left.func.attr == "dumps" \
                and isinstance(node.right, ast.Constant) and node.right.value == "\n" \
                and not any(k.arg == "indent" for k in node.left.keywords):  # indent: a whole JSON document
            found.append(f"line {node.lineno}: json.dumps(...) + newline")
    return found


# Look like it, are not JSONL: each entry is a module and what the scan finds there (line numbers dropped).
NOT_JSONL = {
    "report/inputs.py": ["json.loads in a loop"],  # safetensors headers: one JSON document per weight file
    "train/rundir.py": ["json.loads in a loop"],  # launch.json (one document), polled until machine 0 writes it
    "train/run.py": ["open() for appending"],  # a command's text log
}


def test_no_jsonl_reader_or_appender_outside_the_jsonl_module():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "jsonl.py" and path.parent == PACKAGE:
            continue
        if found := _jsonl_handling(ast.parse(path.read_text(encoding="utf-8"))):
            offenders[str(path.relative_to(PACKAGE))] = [f.split(": ", 1)[1] for f in found]
    assert offenders == NOT_JSONL


def test_the_scan_finds_each_kind_of_handling():  # the check above can fail
    src = ('import json, os\nfor l in f: json.loads(l)\nx = [json.loads(l) for l in f]\nopen(p, "a")\n'
           'open(p, mode="ab")\nos.O_APPEND\ny = json.dumps(r) + "\\n"\n')
    assert len(_jsonl_handling(ast.parse(src))) == 6
    assert _jsonl_handling(ast.parse(Path(jsonl.__file__).read_text())) != []
    assert os.path.basename(jsonl.__file__) == "jsonl.py"
