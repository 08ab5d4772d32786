"""The optional lighteval engine: a clean error without lighteval; the custom tasks module where it is installed."""

import pytest


def test_engine_lighteval_without_lighteval_is_one_clean_line(cli, tmp_path):
    try:
        import lighteval  # noqa: F401

        pytest.skip("lighteval is installed here")
    except ImportError:
        pass
    code, _, err = cli("eval", "--model", "openrs-tiny", "--tasks", "aime24", "--limit", "1", "--engine",
                       "lighteval", "--out", str(tmp_path / "le"))
    assert code == 2 and "lighteval is not installed" in err and "docs/eval.md" in err
    assert not (tmp_path / "le").exists()  # refused before eval-run.json could pin engine=lighteval there


def test_lighteval_settings_are_checked_before_the_out_dir(monkeypatch, tmp_path):
    import sys
    import types

    from openrs_cli.errors import OpenrsError
    from openrs_cli.evaluate import runner

    monkeypatch.setitem(sys.modules, "lighteval", types.ModuleType("lighteval"))  # "installed"
    cfg = runner.EvalConfig(model="openrs-tiny", tasks="aime24", limit=1, engine="lighteval", samples=2,
                            out_dir=str(tmp_path / "le"), cost=False)
    with pytest.raises(OpenrsError, match="--samples 1"):
        runner.run_eval(cfg)
    assert not (tmp_path / "le").exists()


def test_unknown_engine(cli, tmp_path):
    code, _, err = cli("eval", "--model", "openrs-tiny", "--tasks", "aime24", "--engine", "helm",
                       "--out", str(tmp_path / "x"))
    assert code == 2 and "valid: openrs, lighteval" in err


def test_custom_tasks_module_defines_the_five_tasks(tmp_path, monkeypatch):
    pytest.importorskip("lighteval")
    monkeypatch.setenv("OPENRS_LIGHTEVAL_DATA_DIR", str(tmp_path))
    from openrs_cli.evaluate import lighteval_tasks as lt

    assert [t.name for t in lt.TASKS_TABLE] == ["aime24", "amc23", "math_500", "minerva", "olympiadbench"]
    assert (tmp_path / "aime24" / "test.jsonl").is_file()
    doc = lt.TASKS_TABLE[0].prompt_function({"problem": "1+1?", "gold": "2"}, "aime24")
    assert doc.query.startswith("Solve the following math problem efficiently and clearly.  The last")
    assert doc.choices == ["2"]
