"""Cost ledger: concurrent appends, torn lines, multi-node merge by GPU UUID (idempotent, order-independent)."""

from __future__ import annotations

import json
import multiprocessing
import random
import shutil
import threading

import pytest

from openrs_cli.cost import FakeBackend, FakeClock, FakeDevice, open_monitor
from openrs_cli.cost.ledger import LedgerWriter, ledger_path, read_ledger
from openrs_cli.cost.prices import load_prices
from openrs_cli.cost.summary import merge_intervals, summarize_records, summarize_run
from openrs_cli.errors import OpenrsError


def _write_many(path: str, tag: str, n: int) -> None:
    w = LedgerWriter(path)
    pad = "x" * 3000  # longer than PIPE_BUF: atomicity must not depend on small writes
    for i in range(n):
        w.write({"record": "window", "name": f"{tag}-{i}", "pad": pad})
    w.close()


def test_concurrent_writers_never_interleave_a_line(tmp_path):
    path = tmp_path / "cost" / "ledger-h.jsonl"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_many, args=(str(path), f"p{i}", 60)) for i in range(2)]
    threads = [threading.Thread(target=_write_many, args=(str(path), f"t{i}", 60)) for i in range(2)]
    for x in procs + threads:
        x.start()
    for x in procs + threads:
        x.join()
    warnings: list[str] = []
    recs = read_ledger(path, warnings)
    assert warnings == [] and len(recs) == 240
    assert len({r["name"] for r in recs}) == 240
    assert all(r["kind"] == "ledger" and r["schema_version"] == 1 for r in recs)


def test_torn_last_line_is_skipped_with_a_warning_and_appends_stay_whole(tmp_path):
    path = tmp_path / "cost" / "ledger-h.jsonl"
    w = LedgerWriter(path)
    w.write({"record": "window", "name": "a"})
    w.close()
    with open(path, "ab") as f:
        f.write(b'{"kind":"ledger","schema_version":1,"record":"win')  # power cut mid-write
    warnings: list[str] = []
    assert [r["name"] for r in read_ledger(path, warnings)] == ["a"]
    assert len(warnings) == 1 and "truncated last line" in warnings[0]
    w = LedgerWriter(path)  # the next writer ends the torn line first, so its own line parses
    w.write({"record": "window", "name": "b"})
    w.close()
    warnings = []
    assert [r["name"] for r in read_ledger(path, warnings)] == ["a", "b"]
    assert len(warnings) == 1 and "unreadable line 2" in warnings[0]


def test_newer_ledger_schema_is_refused(tmp_path):
    path = tmp_path / "ledger-h.jsonl"
    path.write_text(json.dumps({"kind": "ledger", "schema_version": 99, "record": "run_start"}) + "\n")
    with pytest.raises(OpenrsError, match="newer"):
        read_ledger(path)


def _node_run(run_dir, host: str, monkeypatch, *, gpus=8, hours=2.0, offset=0.0, heartbeat=600.0, uuids=None):
    monkeypatch.setenv("OPENRS_HOST", host)
    clock = FakeClock(1_750_000_000.0 + offset)
    devs = [FakeDevice(name="NVIDIA A100-SXM4-80GB", power_w=400.0, uuid=(uuids or {}).get(i, f"GPU-{host}-{i}"))
            for i in range(gpus)]
    mon = open_monitor(run_dir, kind="train", backend=FakeBackend(devs, clock=clock), clock=clock, interval_s=60,
                       heartbeat_s=heartbeat, thread=False)
    with mon.phase("generation"):
        for _ in range(int(hours * 60)):
            clock.advance(60)
            mon.tick()
    mon.close()


def _all_records(run_dir):
    return [r for f in sorted((run_dir / "cost").glob("ledger-*.jsonl")) for r in read_ledger(f)]


def test_four_node_merge_is_order_independent_and_idempotent(tmp_path, monkeypatch):
    for n in range(4):
        _node_run(tmp_path, f"node{n}", monkeypatch, offset=n * 5.0)
    s = summarize_run(tmp_path)
    assert s["gpu_count"] == 32 and s["hosts"] == ["node0", "node1", "node2", "node3"]
    assert s["gpu_hours"] == pytest.approx(64.0)
    assert s["energy_kwh"] == pytest.approx(32 * 0.4 * 2)
    assert s["cost_usd"] == pytest.approx(64 * 1.89)
    assert s["phases"]["generation"] == pytest.approx(7215.0)  # union across nodes, not 4x
    assert s["wall_s"] == pytest.approx(7215.0)
    prices = load_prices(env={})
    recs = _all_records(tmp_path)
    base = summarize_records(recs, prices, "x")
    rng = random.Random(0)
    for _ in range(3):
        shuffled = recs[:]
        rng.shuffle(shuffled)
        assert summarize_records(shuffled, prices, "x") == base
    # A ledger copied under another name (re-synced node) does not double count.
    shutil.copy(tmp_path / "cost" / "ledger-node2.jsonl", tmp_path / "cost" / "ledger-node2-copy.jsonl")
    again = summarize_run(tmp_path)
    assert again["gpu_hours"] == pytest.approx(64.0) and again["energy_kwh"] == pytest.approx(s["energy_kwh"])
    # Merging the merged pieces again changes nothing.
    merged = merge_intervals(recs)
    as_records = [{"record": "interval", "start_ts": p["start_ts"], "end_ts": p["end_ts"], "monitor_id": "m",
                   "gpus": [p]} for pieces in merged.values() for p in pieces]
    assert merge_intervals(as_records) == merge_intervals(as_records + as_records)
    assert sum(p["gpu_seconds"] for ps in merge_intervals(as_records).values() for p in ps) == pytest.approx(64 * 3600)


def test_two_samplers_on_one_node_are_deduplicated(tmp_path, monkeypatch):
    # Two samplers (e.g. the lock could not be shared on a network filesystem) see the same 4 GPUs with shifted
    # heartbeats: the merge keeps the union of coverage per UUID, not the sum.
    same = {i: f"GPU-shared-{i}" for i in range(4)}
    a, b = tmp_path / "a", tmp_path / "b"
    _node_run(a, "hostA", monkeypatch, gpus=4, hours=1.0, heartbeat=300, uuids=same)
    _node_run(b, "hostA-dup", monkeypatch, gpus=4, hours=1.0, offset=100.0, heartbeat=420, uuids=same)
    run = tmp_path / "run"
    (run / "cost").mkdir(parents=True)
    shutil.copy(ledger_path(a, "hostA"), run / "cost" / "ledger-hostA.jsonl")
    shutil.copy(ledger_path(b, "hostA-dup"), run / "cost" / "ledger-hostA-dup.jsonl")
    s = summarize_run(run)
    assert s["gpu_count"] == 4
    assert s["gpu_hours"] == pytest.approx(4 * 3700 / 3600)  # union of [0, 3600] and [100, 3700]
    assert s["energy_kwh"] == pytest.approx(4 * 0.4 * 3700 / 3600)


def test_a_resumed_run_does_not_bill_the_gap_between_sessions(tmp_path):
    clock = FakeClock()
    for session in range(2):
        mon = open_monitor(tmp_path, kind="train", backend=FakeBackend([FakeDevice(uuid="GPU-0")], clock=clock),
                           clock=clock, interval_s=60, heartbeat_s=600, thread=False)
        for _ in range(60):
            clock.advance(60)
            mon.tick()
        mon.close("interrupted" if session == 0 else "ok")
        clock.advance(5 * 3600)  # five hours down before the resume
    s = summarize_run(tmp_path)
    assert s["wall_s"] == pytest.approx(7200) and s["gpu_hours"] == pytest.approx(2.0)
    assert s["phases"]["other"] == pytest.approx(7200) and s["status"] == "interrupted,ok"


def test_malformed_records_are_skipped_with_a_warning_not_a_traceback(tmp_path, monkeypatch):
    _node_run(tmp_path, "h", monkeypatch, gpus=2, hours=1.0)
    good = summarize_run(tmp_path)
    bad = [{"record": "run_start"}, {"record": "window", "phase": True, "name": "x", "start_ts": 1.0},
           {"record": "interval", "start_ts": 1.0, "end_ts": 2.0, "gpus": [{"name": "A40"}]},
           {"record": "run_start", "start_ts": 1.0, "devices": [{"name": "A40"}]},
           {"record": "run_end", "end_ts": "late"}]
    with open(next((tmp_path / "cost").glob("ledger-*.jsonl")), "a") as f:
        for rec in bad:
            f.write(json.dumps({"kind": "ledger", "schema_version": 1, **rec}) + "\n")
    s = summarize_run(tmp_path)
    assert len(s["warnings"]) == len(good["warnings"]) + len(bad)
    assert all("skipped malformed" in w for w in s["warnings"][: len(bad)])
    assert s["gpu_hours"] == pytest.approx(good["gpu_hours"]) and s["wall_s"] == pytest.approx(good["wall_s"])
