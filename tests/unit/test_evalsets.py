"""Bundled benchmark copies: row counts, sha256 check, tamper detection."""

import shutil

import pytest

from openrs_cli import evalsets
from openrs_cli.errors import DataError


@pytest.mark.parametrize("name, n", [("aime24", 30), ("amc23", 40), ("math500", 500), ("minerva", 272),
                                     ("olympiadbench", 675), ("train-sample", 2000)])
def test_counts(name, n):
    rows = evalsets.load(name)
    assert len(rows) == n and all(r["problem"] and r["answer"] for r in rows)


def test_tampered_file_fails(tmp_path, monkeypatch):
    d = tmp_path / "data"
    shutil.copytree(evalsets.DATA_DIR, d)
    with open(d / "aime24.jsonl", "a") as f:
        f.write("\n")
    monkeypatch.setattr(evalsets, "DATA_DIR", d)
    with pytest.raises(DataError, match="fails its sha256 check"):
        evalsets.load("aime24")
    with pytest.raises(DataError, match="unknown bundled set"):
        evalsets.load("aime25")
