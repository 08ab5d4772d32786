"""Copy reports/paper/tables/table2.md into README.md between its `<!-- table2 -->` markers (`make report` runs
this after regenerating reports/paper; tests/unit/test_reports_current.py checks that the two agree)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
START, END = "<!-- table2:start (make report) -->", "<!-- table2:end -->"


def block(table: str) -> str:
    return f"{START}\n{table.rstrip()}\n{END}"


def main() -> int:
    readme = REPO / "README.md"
    text = readme.read_text()
    table = (REPO / "reports" / "paper" / "tables" / "table2.md").read_text()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        print(f"README.md has no {START} ... {END} block", file=sys.stderr)
        return 2
    new = pattern.sub(lambda _m: block(table), text)
    if new != text:
        readme.write_text(new)
        print("README.md: Table 2 updated from reports/paper")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
