"""The preflight's store, resource and plugin refusals through the real CLI: exit status 2, one line starting
``error: `` with the fix, no traceback, and nothing written (no results folder at all: no mlflow.db, optuna.db,
baseline). Stores made unwritable by a regular file in their path (``<tmp>/afile/...``), which blocks root too.
The variants of each check that need no process of their own are tested in-process below."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from test_cli import one_line_refusal, run_cli

SMALL = ["bench", "--dataset", "digits", "--model", "mlp", "--protocol", "quick", "--epochs", "1",
         "--finetune-epochs", "1", "--ratios", "2", "--quiet"]
BLOCKED = "{tmp}/afile"  # a regular file: nothing can be made beneath it

CASES = [  # (extra arguments, extra environment, the line's pattern)
    ([], {"MLFLOW_TRACKING_URI": "sqlite:///{tmp}/afile/sub/mlflow.db"},
     r"MLflow store sqlite:///.*/afile/sub/mlflow\.db cannot be written \(.*/afile is a file, not a folder\); point "
     r"MLFLOW_TRACKING_URI at a writable folder"),
    ([], {"MLFLOW_TRACKING_URI": "{tmp}/mlruns"},
     r"MLFLOW_TRACKING_URI=.*/mlruns is a folder: MLflow 3 no longer opens its file store there; use a database in "
     r"it, MLFLOW_TRACKING_URI=sqlite:///.*/mlruns/mlflow\.db"),
    (["--storage", "journal:{tmp}/afile/journal.log"], {},
     r"journal storage .*/afile/journal\.log cannot be written \(.*/afile is a file, not a folder\); give --storage "
     r"journal:"),
    (["--storage", "sqlite:///{tmp}/afile/optuna.db"], {},
     r"storage 'sqlite:///.*/afile/optuna\.db' cannot be written \(.*/afile is a file, not a folder\); give "
     r"--storage sqlite:"),
    (["--artifact-dir", "{tmp}/afile/artifacts"], {},
     r"--artifact-dir .*/afile/artifacts \(the trials' artifacts\) is not writable \(.*/afile is a file, not a "
     r"folder\); give a writable folder with --artifact-dir"),
    (["--seeds", "1000"], {},
     r"--seeds 1000 is more than 10: each seed trains its own baseline and every point again \(up to 3,000 "
     r"trainings, 3,000 epochs\); use --seeds 10 or fewer, or pass --allow-large"),
    (["--workers", "1000"], {},
     r"--workers 1000 is more than the \d+ CPU core\(s\) this process may use: .*; use --workers \d+ or fewer, or "
     r"pass --allow-large"),
    # Past the bounds with --allow-large: the next check (the journal store) is what refuses now.
    (["--seeds", "1000", "--workers", "1000", "--allow-large", "--storage", "journal:{tmp}/afile/journal.log"], {},
     r"journal storage .*/afile/journal\.log cannot be written"),
]


def _assert_refused(result, pattern: str, results: Path) -> None:
    one_line_refusal(result, pattern)
    assert not results.exists(), sorted(results.rglob("*"))  # no store, no baseline, not even the folder


@pytest.mark.parametrize("args,env,pattern", CASES, ids=[" ".join(a) or next(iter(e)) + "=" + next(iter(e.values()))
                                                         for a, e, _ in CASES])
def test_a_store_or_resource_refusal_is_one_line_and_exit_2_with_nothing_written(args, env, pattern, tmp_path):
    (tmp_path / "afile").write_text("a regular file where a folder would have to be")
    tmp = str(tmp_path)
    result = run_cli(*SMALL, *(a.format(tmp=tmp) for a in args), results=tmp_path / "results", timeout=60,
                     env_extra={k: v.format(tmp=tmp) for k, v in env.items()})
    _assert_refused(result, pattern, tmp_path / "results")
    assert not (tmp_path / "mlruns").exists()


def test_a_study_prints_its_work_estimate_before_it_starts(tmp_path):
    (tmp_path / "afile").write_text("")
    result = run_cli(*SMALL, "--seeds", "3", "--storage", f"journal:{tmp_path}/afile/journal.log",
                     results=tmp_path / "results", timeout=60)
    assert result.returncode == 2  # stopped by the store check, after the estimate
    # quick: 10-epoch baselines overridden to 1, a 1-epoch fine-tune, one lr, one point, no control arms.
    assert ("work: up to 9 trainings, 9 epochs (plus what methods train themselves: iterative rounds, train-time "
            "training): 3 baseline(s) x 1 ep, 3 dense + fine-tune control(s) x 1 ep, 1 trial(s) x 3 seed(s) x 1 "
            "arm(s) = 1 ep per trial and seed") in result.stdout


PLUGINS = [
    ("exiting_plugin.py", "import sys\nsys.exit(0)\n", None,
     r"plugin '.*exiting_plugin\.py' called sys\.exit\(0\) while being imported; a plugin module must only register"),
    # Named so that the old check ("the plugin's name starts with the missing module's") called it not found.
    ("missingdep_plugin.py", "import missingdep\n", "missingdep_plugin",
     r"plugin 'missingdep_plugin' failed to import: it needs module 'missingdep', which is not installed; pip install"),
]


@pytest.mark.parametrize("name,body,module,pattern", PLUGINS, ids=["sys.exit(0)", "missing dependency"])
def test_a_plugin_that_exits_or_misses_a_dependency_is_one_line_and_exit_2(name, body, module, pattern, tmp_path):
    (tmp_path / "plugins").mkdir()
    path = tmp_path / "plugins" / name
    path.write_text(textwrap.dedent(body))
    result = run_cli(*SMALL, "--plugin", module or str(path), results=tmp_path / "results", timeout=60,
                     env_extra={"PYTHONPATH": str(tmp_path / "plugins")})
    _assert_refused(result, pattern, tmp_path / "results")


# In-process: the variants of each check (no process start each).

def test_tracking_uri_variants(tmp_path, monkeypatch):
    from bench.preflight import PreflightError
    from bench.preflight.stores import check_tracking_store

    (tmp_path / "afile").write_text("")
    check_tracking_store(f"sqlite:///{tmp_path}/new/folder/mlflow.db")  # MLflow makes missing folders: fine
    with pytest.raises(PreflightError, match=r"is a folder: MLflow 3 no longer opens its file store"):
        check_tracking_store(f"file://{tmp_path}/mlruns")
    (tmp_path / "old" / "0").mkdir(parents=True)
    with pytest.raises(PreflightError, match=r"an existing file store: copy it over with `mlflow migrate-filestore`"):
        check_tracking_store(str(tmp_path / "old"))
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow's own opt-out: then only writability counts
    check_tracking_store(str(tmp_path / "mlruns"))
    with pytest.raises(PreflightError, match=r"MLflow file store .* is not writable \(.*afile is a file"):
        check_tracking_store(f"{tmp_path}/afile/mlruns")
    with pytest.raises(PreflightError, match=r"is not a tracking store MLflow can use"):
        check_tracking_store("nosuchscheme://host/path")
    with pytest.raises(PreflightError, match=r"cannot reach the MLflow database postgresql\+psycopg2://u:\*\*\*@"):
        check_tracking_store("postgresql+psycopg2://u:secret@127.0.0.1:9/db")  # the password is not printed
    assert not list(tmp_path.rglob("*.db")) and not (tmp_path / "new").exists()  # nothing was written


def test_optuna_storage_variants(tmp_path):
    from bench.studies import StorageError, check_storage

    (tmp_path / "afile").write_text("")
    check_storage(f"sqlite:///{tmp_path}/optuna.db")
    check_storage(f"journal:{tmp_path}/journal.log")
    (tmp_path / "adir").mkdir()
    with pytest.raises(StorageError, match=r"adir is a folder, not a file"):
        check_storage(f"journal:{tmp_path}/adir")
    with pytest.raises(StorageError, match=r"cannot reach storage 'sqlite:///.*/missing/optuna\.db': folder .* does "
                                           r"not exist; create it"):
        check_storage(f"sqlite:///{tmp_path}/missing/optuna.db")
    with pytest.raises(StorageError, match=r"is not a URL"):
        check_storage("optuna.db")
    with pytest.raises(StorageError, match=r"cannot reach storage"):
        check_storage("postgresql+psycopg2://u:p@127.0.0.1:9/db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"]  # nothing was written
