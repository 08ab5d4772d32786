"""Data builds from the bundled DeepScaleR sample: stage counts, open-rs-shaped mixes with the solvable filter
(a fake generator behind eval's `generate` signature; the real tiny model runs in tests/integration), planted
contamination, byte-identical rebuilds, atomic output, inspect, and bad inputs ending in one line + exit 2."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from openrs_cli import evalsets
from openrs_cli.data import build, inspect_dir, load_spec
from openrs_cli.errors import DataError, RunDirError
from tests.conftest import run_openrs

SAMPLE = evalsets.path("train-sample")


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def halves(tmp_path_factory) -> tuple[Path, Path]:
    """The sample split in two, standing in for the s1 pool (s1 column names) and DeepScaleR."""
    d = tmp_path_factory.mktemp("src")
    rows = evalsets.load("train-sample")
    s1 = _write_jsonl(
        d / "s1.jsonl",
        [
            {"question": r["problem"], "solution": r.get("solution") or f"$\\boxed{{{r['answer']}}}$"}
            for r in rows[:1000]
        ],
    )
    ds = _write_jsonl(d / "ds.jsonl", [{k: r.get(k) for k in ("problem", "solution", "answer")} for r in rows[1000:]])
    return s1, ds


def _solved(problem: str) -> bool:
    return int(hashlib.sha256(problem.encode()).hexdigest(), 16) % 4 == 0


def fake_generate(answers: dict[str, str]):
    """Same signature as openrs_cli.evaluate.generate; 'solves' a fixed quarter of the problems (prompt = problem)."""
    from openrs_cli.evaluate import Completion

    def generate(
        model,
        prompts,
        *,
        samples=1,
        max_new_tokens,
        temperature,
        top_p,
        seed,
        backend="auto",
        batch_size=None,
        on_progress=None,
    ):
        out = []
        for p in prompts:
            text = p[-1]["content"]
            reply = f"So the answer is $\\boxed{{{answers[text]}}}$." if _solved(text) else "I cannot tell."
            out.append([Completion(reply, 8, "stop") for _ in range(samples)])
        if on_progress:
            on_progress(len(prompts) * samples, len(prompts) * samples)
        return out

    return generate


OPEN_RS_SMALL = [
    "sources.open-deepscaler.solvable.prompt={problem}",
    "sources.open-deepscaler.solvable.samples=2",
    "sources.open-deepscaler.solvable.model=fake",
    "sources.open-s1.solvable.model=null",
    "mix.open-s1=300",
    "mix.open-deepscaler=300",
    "mix.easy=50",
]


def _build_open_rs(halves, out: Path, extra: list[str] = ()) -> dict:
    s1, ds = halves
    spec = load_spec("open-rs", OPEN_RS_SMALL + list(extra), [f"open-s1={s1}", f"open-deepscaler={ds}"])
    answers = {json.loads(line)["problem"]: json.loads(line)["answer"] for line in ds.read_text().splitlines()}
    answers = {" ".join(k.split()): v for k, v in answers.items()}

    class Lookup(dict):
        def __missing__(self, key):
            return answers[" ".join(key.split())]

    return build(spec, out, generate=fake_generate(Lookup()))


@pytest.fixture(scope="module")
def open_rs(halves, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("b") / "open-rs"
    return out, _build_open_rs(halves, out)


def _stage(m, stage, pool):
    return next(s for s in m["stages"] if s["stage"] == stage and s["pool"] == pool)


def test_open_rs_shaped_mix_stage_counts(open_rs):
    out, m = open_rs
    for s in m["stages"]:
        if s["in"] is not None and s["stage"] != "mix":
            assert s["in"] - s["out"] == sum(s["dropped"].values()), s
    assert _stage(m, "load", "open-s1")["out"] == 1000 and _stage(m, "load", "open-deepscaler")["out"] == 1000
    assert _stage(m, "gold", "open-s1")["out"] == 1000
    mp = _stage(m, "multipart", "open-deepscaler")
    assert mp["in"] == 1000 and mp["out"] == 962 and mp["dropped"] == {"multipart_two_asks": 3, "multipart_parts": 35}
    assert not any(s["stage"] == "multipart" and s["pool"] == "open-s1" for s in m["stages"])  # preset: s1 keeps them
    dd = _stage(m, "dedup", "all")
    assert dd["in"] == 1962 and dd["dropped"] == {"exact_duplicate": 74, "near_duplicate": 6}
    dc = _stage(m, "decontaminate", "all")
    assert dc["in"] == 1882 and dc["dropped"]["contaminated"] == len(
        {(h["train_pool"], h["train_row"]) for h in m["decontamination"]["hits"]}
    )
    sv = _stage(m, "solvable", "open-deepscaler")
    assert sv["in"] == sv["out"] + sv["dropped"]["solved"] == m["pools"]["open-deepscaler"] + m["pools"]["easy"]
    assert sum(m["solvable"]["open-deepscaler"]["correct_histogram"].values()) == sv["in"]
    assert set(m["solvable"]["open-deepscaler"]["correct_histogram"]) == {"0", "2"}
    assert m["mix"] == {
        "open-s1": {"requested": 300, "available": m["pools"]["open-s1"], "taken": 300},
        "open-deepscaler": {"requested": 300, "available": sv["out"], "taken": 300},
        "easy": {"requested": 50, "available": sv["dropped"]["solved"], "taken": 50},
    }
    assert m["rows"] == 650 and m["easy_unused_rows"] == sv["dropped"]["solved"] - 50


def test_output_is_a_saved_dataset_with_parquet_copy(open_rs):
    import datasets
    import pyarrow.parquet as pq

    out, m = open_rs
    ds = datasets.load_from_disk(str(out))
    assert ds.column_names == ["problem", "solution", "answer", "source"] and len(ds) == 650
    assert pq.read_table(out / "data.parquet").to_pylist() == ds.to_list()
    counts = {s: ds["source"].count(s) for s in set(ds["source"])}
    assert counts == {"open-s1": 300, "open-deepscaler": 300, "open-deepscaler/easy": 50}
    for r in ds:
        assert _solved(r["problem"]) == (r["source"] == "open-deepscaler/easy") or r["source"] == "open-s1"
    easy_left = pq.read_table(out / "easy.parquet")
    assert easy_left.num_rows == m["easy_unused_rows"]
    assert m["inputs"][0]["sha256"] == hashlib.sha256(Path(m["inputs"][0]["path"]).read_bytes()).hexdigest()
    assert m["kind"] == "data_manifest" and m["seed"] == 42 and m["spec"]["mix"]["easy"] == 50


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in d.iterdir() if p.name != "manifest.json"}


def _stable(manifest: dict) -> dict:
    drop = {"time_utc", "build_seconds", "files"}
    m = {k: v for k, v in manifest.items() if k not in drop}
    m["stages"] = [{k: v for k, v in s.items() if k != "seconds"} for s in m["stages"]]
    return m


def test_rebuild_is_byte_identical_and_seed_changes_it(open_rs, halves, tmp_path):
    out, m = open_rs
    m2 = _build_open_rs(halves, tmp_path / "again")
    assert _files(out) == _files(tmp_path / "again")
    assert m2["content_sha256"] == m["content_sha256"] and m2["files"] == m["files"]
    assert _stable(m2) == _stable(json.loads((out / "manifest.json").read_text()))
    m3 = _build_open_rs(halves, tmp_path / "seed7", ["seed=7"])
    assert m3["content_sha256"] != m["content_sha256"]


def test_planted_eval_problems_are_removed_and_listed(tmp_path, cli):
    train = evalsets.load("train-sample")[:60]
    planted = [
        evalsets.load(name)[i]
        for name, i in (("aime24", 3), ("amc23", 5), ("math500", 7), ("minerva", 11), ("olympiadbench", 13))
    ]
    rows = [{"problem": r["problem"], "answer": r["answer"]} for r in train]
    for k, p in enumerate(planted):  # spread them through the file, one with its spacing changed
        rows.insert(
            10 * k + 3, {"problem": p["problem"] if k else "  " + p["problem"].replace(" ", "\n", 3), "answer": "7"}
        )
    src = _write_jsonl(tmp_path / "in.jsonl", rows)
    code, out, err = cli(
        "data",
        "build",
        "custom",
        "--source",
        str(src),
        "--out",
        str(tmp_path / "o"),
        "sources.custom.drop_multipart=false",
    )
    assert code == 0, err
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    hits = m["decontamination"]["hits"]
    for p in planted:
        bench = p["id"].split("-")[0] if not p["id"].startswith("test/") else "math500"
        h = [h for h in hits if h["benchmark"] == bench and h["problem_id"] == p["id"]]
        assert h and h[0]["benchmark_problem"] == p["problem"], p["id"]
        assert " ".join(h[0]["train_problem"].split()) == " ".join(p["problem"].split())
    kept = {" ".join(r["problem"].split()) for r in __import__("datasets").load_from_disk(str(tmp_path / "o"))}
    assert not kept & {" ".join(p["problem"].split()) for p in planted}
    code, out, _ = cli("data", "inspect", str(tmp_path / "o"), "--json")
    info = json.loads(out)
    assert code == 0 and info["decontamination_hits"] == len(hits) and info["content_ok"]
    assert info["rows"] == m["rows"] and info["sources"] == {"custom": m["rows"]}
    code, out, _ = cli("data", "inspect", str(tmp_path / "o"), "--hits", "--json")
    assert code == 0 and {p["id"] for p in planted} <= {h["problem_id"] for h in json.loads(out)["hits"]}
    code, out, _ = cli("data", "inspect", str(tmp_path / "o"), "--hits")
    assert code == 0 and "shared n-gram" in out and "aime24-" in out


def test_existing_output_kept_unless_overwrite_and_failed_build_leaves_it(halves, tmp_path, cli):
    s1, _ = halves
    out = tmp_path / "d"
    args = (
        "data",
        "build",
        "custom",
        "--source",
        str(s1),
        "--column",
        "problem=question",
        "--out",
        str(out),
        "sources.custom.limit=40",
    )
    assert cli(*args)[0] == 0
    before = _files(out)
    code, _, err = cli(*args)
    assert code == 2 and "already exists; pass --overwrite" in err
    # A build that fails late (the mix asks for more than exists) leaves the good dataset and no temp dirs.
    code, _, err = cli(*args, "--overwrite", "mix.custom=100000")
    assert code == 2 and "asks for 100000 rows" in err
    assert _files(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    assert cli(*args, "--overwrite", "seed=5", "mix.custom=10")[0] == 0
    assert _files(out) != before and json.loads((out / "manifest.json").read_text())["rows"] == 10
    stranger = tmp_path / "notes"
    stranger.mkdir()
    (stranger / "mine.txt").write_text("keep me")
    with pytest.raises(RunDirError, match="not an openrs dataset"):
        build(load_spec("custom", [], [str(s1)], ["problem=question"]), stranger, overwrite=True)
    assert (stranger / "mine.txt").read_text() == "keep me"


def test_inspect_detects_tampering_and_rejects_non_dataset(open_rs, tmp_path, cli):
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    out, _ = open_rs
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    t = pq.read_table(copy / "data.parquet")
    pq.write_table(t.set_column(2, "answer", pa.array(["0"] * t.num_rows)), copy / "data.parquet")
    info = inspect_dir(copy)
    assert info["content_ok"] is False
    code, text, _ = cli("data", "inspect", str(out))
    assert code == 0 and "content_sha256" in text and "open-deepscaler/easy" in text and "decontamination" in text
    code, _, err = cli("data", "inspect", str(tmp_path))
    assert code == 2 and "no manifest.json" in err


def _bad(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    good = {"problem": "What is 1+1?", "answer": "2"}
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "badjson.jsonl").write_text(json.dumps(good) + "\n{not json\n")
    (tmp_path / "latin1.jsonl").write_bytes(
        (json.dumps(good) + "\n").encode() + '{"problem": "caf\xe9"}\n'.encode("latin-1")
    )
    _write_jsonl(tmp_path / "cols.jsonl", [{"question": "What is 1+1?", "answer": "2"}])
    _write_jsonl(tmp_path / "noans.jsonl", [{"problem": "What is 1+1?", "reply": "2"}])
    _write_jsonl(tmp_path / "types.jsonl", [good, {"problem": {"text": "x"}, "answer": "1"}])
    _write_jsonl(tmp_path / "nogold.jsonl", [{"problem": "What?", "answer": ""}, {"problem": "Why?", "answer": "$$"}])
    _write_jsonl(tmp_path / "good.jsonl", [good])
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"problem": ["What is 1+1?"] * 50, "answer": ["2"] * 50}), tmp_path / "t.parquet")
    data = (tmp_path / "t.parquet").read_bytes()
    (tmp_path / "trunc.parquet").write_bytes(data[: len(data) // 2])
    (tmp_path / "x.csv").write_text("problem,answer\n")
    return {
        "missing": ([str(tmp_path / "nope.jsonl")], "does not exist"),
        "empty": ([str(tmp_path / "empty.jsonl")], "has no rows"),
        "bad_json": ([str(tmp_path / "badjson.jsonl")], "line 2: not valid JSON"),
        "not_utf8": ([str(tmp_path / "latin1.jsonl")], "is not UTF-8 (bad byte at line 2)"),
        "wrong_columns": (
            [str(tmp_path / "cols.jsonl")],
            "no column 'problem' (columns: question, answer); map it with --column problem=NAME",
        ),
        "no_gold_column": ([str(tmp_path / "noans.jsonl")], "neither a solution column"),
        "unparseable_row": ([str(tmp_path / "types.jsonl")], "row 1: column 'problem' holds a dict"),
        "no_gold_rows": ([str(tmp_path / "nogold.jsonl")], "the build kept no rows"),
        "truncated_parquet": ([str(tmp_path / "trunc.parquet")], "not a readable Parquet file"),
        "unsupported": ([str(tmp_path / "x.csv")], "unsupported file type '.csv'"),
        "plain_dir": ([str(tmp_path)], "not a saved HF dataset"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "empty",
        "bad_json",
        "not_utf8",
        "wrong_columns",
        "no_gold_column",
        "unparseable_row",
        "no_gold_rows",
        "truncated_parquet",
        "unsupported",
        "plain_dir",
    ],
)
def test_bad_inputs_one_line_exit_2(case, tmp_path, cli):
    src, fragment = _bad(tmp_path)[case]
    code, _, err = cli("data", "build", "custom", "--source", *src, "--out", str(tmp_path / "out"))
    assert code == 2 and fragment in err and "\n" not in err, err
    assert not (tmp_path / "out").exists()


def test_bad_input_real_process_prints_one_red_line(tmp_path):
    (tmp_path / "cols.jsonl").write_text(json.dumps({"q": "x", "answer": "1"}) + "\n")
    r = run_openrs("data", "build", "custom", "--source", str(tmp_path / "cols.jsonl"), "--out", str(tmp_path / "o"))
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "no column 'problem'" in lines[0] and "Traceback" not in r.stderr


def test_hf_dir_and_parquet_sources_give_the_same_rows(tmp_path):
    import datasets

    rows = [{"problem": f"What is {i}+{i}?", "answer": str(2 * i)} for i in range(30)]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "hf"))
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "p.parquet"))
    a = build(load_spec("custom", ["dedup.near=false"], [str(tmp_path / "hf")]), tmp_path / "a")
    b = build(load_spec("custom", ["dedup.near=false"], [str(tmp_path / "p.parquet")]), tmp_path / "b")
    assert a["content_sha256"] == b["content_sha256"] and a["rows"] == 30
    assert a["inputs"][0]["format"] == "hf_dir" and b["inputs"][0]["format"] == "parquet"
    with pytest.raises(DataError, match="no split 'test'"):
        datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "dd"))
        build(load_spec("custom", ["sources.custom.split=test"], [str(tmp_path / "dd")]), tmp_path / "c")


def test_out_under_a_file_is_one_line_before_building(tmp_path, cli):
    _write_jsonl(tmp_path / "good.jsonl", [{"problem": "What is 1+1?", "answer": "2"}])
    (tmp_path / "afile").write_text("mine\n")
    code, _, err = cli("data", "build", "custom", "--source", str(tmp_path / "good.jsonl"),
                       "--out", str(tmp_path / "afile" / "sub"))
    assert code == 2 and "is a file, not a directory" in err and "\n" not in err, err
    assert (tmp_path / "afile").read_text() == "mine\n"
