"""Really kill a sweep mid-trial (SIGKILL, and Ctrl-C), re-run the same command, and check nothing was
lost, duplicated or left RUNNING."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch

from bench.tracking import Tracker

from bench.paths import REPO
COMMAND = [sys.executable, "-m", "bench", "bench", "--dataset", "digits", "--model", "mlp", "--ratios", "2,4,8",
           "--epochs", "2", "--finetune-epochs", "25", "--protocol", "quick", "--quiet"]


def _env(results: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["COMPRESSION_BENCH_RESULTS"] = str(results)
    return env


def _trials(results: Path) -> list:
    storage = f"sqlite:///{results / 'optuna.db'}"
    try:
        (summary,) = optuna.get_all_study_summaries(storage)
    except (ValueError, Exception):
        return []
    return optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()


def _start_and_interrupt(results: Path, sig: int, workers: int = 1) -> tuple[subprocess.Popen, str, int]:
    """Start the sweep and send ``sig`` to its process group (as a terminal's Ctrl-C does: the main process and
    every worker) once one trial is complete and another is inside a run. Returns the process, the run the
    running trial started last, and when the signal was sent (ms since the epoch)."""
    # A terminal's foreground job takes Ctrl-C; a process started from a background job (`cmd &` in a script,
    # nohup) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt: restore the default.
    proc = subprocess.Popen(COMMAND + ["--workers", str(workers)], cwd=REPO, env=_env(results),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler))
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            trials = _trials(results)
        except Exception:
            trials = []
        running = [t for t in trials if t.state.name == "RUNNING" and t.user_attrs.get("mlflow_run_ids")]
        if any(t.state.name == "COMPLETE" for t in trials) and running:
            sent = int(time.time() * 1000)
            os.killpg(proc.pid, sig)
            proc.wait(timeout=120)
            return proc, running[0].user_attrs["mlflow_run_ids"][-1], sent
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"never caught a trial in its run: {proc.communicate()[1].decode()[-2000:]}")


def _assert_ended_by_the_signal(results: Path, run_id: str, sent_ms: int, status: str) -> None:
    """The run the trial was in when the signal was sent ended ``status`` - unless it had finished just before
    the signal (a trial moves from one arm's run to the next, and the test cannot stop it between looking and
    sending): no run in progress at the signal ever ends FINISHED."""
    info = Tracker(f"sqlite:///{results / 'mlflow.db'}").client.get_run(run_id).info
    if info.status == "FINISHED":
        assert info.end_time <= sent_ms, (info.end_time, sent_ms)
    else:
        assert info.status == status, info.status


def _check_resumed(results: Path, killed_run: str, killed_status: str, sent_ms: int) -> None:
    again = subprocess.run(COMMAND, cwd=REPO, env=_env(results), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    trials = _trials(results)
    complete = sorted(t.params["ratio"] for t in trials if t.state.name == "COMPLETE")
    assert complete == [2.0, 4.0, 8.0]  # every point once: nothing lost, nothing duplicated
    assert [t.state.name for t in trials].count("FAIL") == 1
    assert len({t.number for t in trials}) == len(trials)
    tracker = Tracker(f"sqlite:///{results / 'mlflow.db'}")
    runs = tracker.runs_frame()
    assert "RUNNING" not in set(runs["status"])
    _assert_ended_by_the_signal(results, killed_run, sent_ms, killed_status)
    finished = runs[(runs["status"] == "FINISHED") & (runs["tags.kind"] == "compressed")]
    assert sorted(finished["params.requested_ratio"].astype(float)) == [2.0, 4.0, 8.0]
    for cached in (results / "baselines").glob("*.pt"):
        torch.load(cached, weights_only=True)  # the cache was never left half-written
    assert not list((results / "baselines").glob("*.partial"))


def test_sigkill_mid_trial_then_rerun_completes_the_study(tmp_path):
    proc, run_id, sent = _start_and_interrupt(tmp_path, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    _check_resumed(tmp_path, run_id, "KILLED", sent)


def _assert_one_interrupt_line(proc: subprocess.Popen) -> None:
    stderr = proc.stderr.read().decode()
    assert proc.returncode == 130, stderr[-2000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted: "), stderr[-3000:]  # no library traceback


def test_ctrl_c_mid_trial_marks_the_run_killed_and_rerun_completes(tmp_path):
    proc, run_id, sent = _start_and_interrupt(tmp_path, signal.SIGINT)
    _assert_one_interrupt_line(proc)
    _assert_ended_by_the_signal(tmp_path, run_id, sent, "KILLED")
    failed = [t for t in _trials(tmp_path) if t.state.name == "FAIL"]
    assert len(failed) == 1
    _check_resumed(tmp_path, run_id, "KILLED", sent)


def test_ctrl_c_with_two_workers_leaves_no_trial_or_run_running_and_prints_one_line(tmp_path):
    proc, run_id, sent = _start_and_interrupt(tmp_path, signal.SIGINT, workers=2)
    _assert_one_interrupt_line(proc)
    states = [t.state.name for t in _trials(tmp_path)]
    assert "RUNNING" not in states and "FAIL" in states, states  # not left for a re-run to find stale
    runs = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}").runs_frame()
    assert "RUNNING" not in set(runs["status"]), runs[["status", "tags.kind", "tags.trial"]]
    _assert_ended_by_the_signal(tmp_path, run_id, sent, "KILLED")
    sweep = runs[runs["tags.kind"] == "sweep"]
    assert list(sweep["status"]) == ["KILLED"]
