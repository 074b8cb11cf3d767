"""The real CLI in a subprocess: bad input gives one clear line, exit status 2, and writes nothing."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.paths import REPO


def run_cli(*args: str, results: Path, data: Path | None = None, timeout: int = 120,
            env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(env_extra or {})
    env["COMPRESSION_BENCH_RESULTS"] = str(results)
    if data is not None:
        env["COMPRESSION_BENCH_DATA"] = str(data)
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


BAD_INPUTS = [
    (["bench", "--dataset", "digits", "--model", "mlp", "--trials", "1", "--ratio-range", "5000,6000"],
     "--ratio-range 5000,6000 is out of reach: the largest ratio magnitude reaches on mlp is [0-9.]+x; use "
     "--ratio-range 1.5,"),
    (["run", "--method", "nope", "--ratio", "4"], "unknown method 'nope'; choose one of: .*magnitude"),
    (["run", "--dataset", "imagenet", "--ratio", "4"], "unknown dataset 'imagenet'; choose one of: .*fashion-mnist"),
    (["run", "--model", "resnet9000", "--ratio", "4"], "unknown model 'resnet9000'; choose one of: .*lenet300"),
    (["run", "--ratio", "1"], "compression ratio must be a finite number > 1"),
    (["run", "--ratio", "0.5"], "compression ratio must be a finite number > 1"),
    (["run", "--ratio", "-4"], "compression ratio must be a finite number > 1"),
    (["run", "--ratio", "nan"], "compression ratio must be a finite number > 1"),
    (["run", "--ratio", "inf"], "compression ratio must be a finite number > 1"),
    (["run", "--ratio", "eight"], "compression ratio must be a number > 1 .*'eight'"),
    (["bench", "--ratios", "2,x"], "compression ratio must be a number > 1 .*'x'"),
    (["bench", "--ratios", ","], "--ratios needs at least one ratio"),
    (["bench", "--seeds", "0"], "--seeds must be an integer >= 1, got 0"),
    (["bench", "--seeds", "two"], "--seeds must be an integer >= 1, got 'two'"),
    (["run", "--ratio", "4", "--seed", "-1"], "--seed must be an integer >= 0"),
    (["run", "--ratio", "4", "--epochs", "-1"], "--epochs must be an integer >= 0, got -1"),
    (["run", "--ratio", "4", "--finetune-epochs", "-2"], "--finetune-epochs must be an integer >= 0"),
    (["run", "--ratio", "4", "--finetune-lr", "0"], "--finetune-lr must be a positive number"),
    (["run", "--ratio", "4", "--train-limit", "0"], "--train-limit must be an integer >= 1"),
    (["run", "--ratio", "4", "--param", "scope=diagonal"], "scope='diagonal' is not allowed; choose one of: global, layer"),
    (["run", "--ratio", "4", "--param", "rounds=many"], "rounds='many' must be of type int"),
    (["run", "--ratio", "4", "--param", "rounds=0"], "rounds must be between 1 and 100"),
    (["run", "--ratio", "4", "--param", "colour=red"], "unknown parameter\\(s\\) colour; allowed: .*scope"),
    (["run", "--ratio", "4", "--param", "scope"], "must look like key=value"),
    (["run", "--ratio", "4", "--param", "random=maybe"], "random='maybe' must be of type bool"),
    (["run", "--ratio", "4", "--threads", "0"], "--threads must be an integer >= 1"),
    (["run", "--ratio", "4", "--protocol", "fastest"], "unknown protocol 'fastest'; choose one of: fair, quick"),
    (["bench", "--protocol", "fair", "--method", "lma", "--param", "epochs=40"],
     "lma epochs=40 breaks the fair protocol's equal budget: every arm trains 15 epochs"),
    (["run", "--ratio", "4", "--lr", "-1"], "--lr must be a positive number"),
    (["fetch", "svhn"], "unknown dataset 'svhn'"),
]


def one_line_refusal(result: subprocess.CompletedProcess, pattern: str) -> str:
    """Exit status 2, exactly one stderr line ``error: ...`` matching ``pattern``, no traceback; the line."""
    import re

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_clear_line_and_exit_2(args, message, tmp_path):
    result = run_cli(*args, results=tmp_path / "results")
    one_line_refusal(result, message)
    assert not (tmp_path / "results" / "mlflow.db").exists()


ENVIRONMENT_CASES = [
    (["bench", "--dataset", "digits", "--storage", "not-a-url"], {}, "storage 'not-a-url' is not a URL"),
    (["bench", "--dataset", "digits", "--storage", "sqlite:////nonexistent/dir/optuna.db"], {},
     "cannot reach storage 'sqlite:////nonexistent/dir/optuna.db'"),
    (["bench", "--dataset", "digits", "--storage", "journal:/nonexistent/dir/journal.log"], {},
     "journal storage directory /nonexistent/dir does not exist"),
    (["run", "--dataset", "digits", "--ratio", "4"], {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"},
     "cannot reach the MLflow tracking server at http://127.0.0.1:9"),
]


@pytest.mark.parametrize("args,env,message", ENVIRONMENT_CASES, ids=[m[:40] for _, _, m in ENVIRONMENT_CASES])
def test_bad_environment_is_one_clear_line_and_exit_2(args, env, message, tmp_path):
    result = run_cli(*args, results=tmp_path / "results", timeout=90, env_extra=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "results" / "mlflow.db").exists()


def test_unwritable_results_directory_is_bad_input(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_cli("run", "--dataset", "digits", "--ratio", "4", results=blocker / "results")
    assert result.returncode == 2 and "is not writable" in result.stderr and "COMPRESSION_BENCH_RESULTS" in result.stderr


def test_altered_idx_file_fails_its_checksum_through_the_cli(tmp_path):
    from datasets.fetch import FASHION_MNIST

    if not FASHION_MNIST.cached():
        pytest.skip("Fashion-MNIST is not fetched; `make test` fetches it")
    data = tmp_path / "data"
    (data / "fashion-mnist").mkdir(parents=True)
    for f in FASHION_MNIST.cache.iterdir():
        (data / "fashion-mnist" / f.name).write_bytes(f.read_bytes())
    images = data / "fashion-mnist" / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])  # truncated
    result = run_cli("run", "--ratio", "4", results=tmp_path / "results", data=data)
    assert result.returncode == 2 and "checksum mismatch for" in result.stderr and "t10k-images-idx3-ubyte" in result.stderr
    assert FASHION_MNIST.checksums["t10k-images-idx3-ubyte"] in result.stderr


def test_corrupt_cached_baseline_is_detected_and_retrained(tmp_path):
    args = ("run", "--dataset", "digits", "--model", "mlp", "--ratio", "4", "--epochs", "1", "--finetune-epochs", "0")
    first = run_cli(*args, results=tmp_path / "results", timeout=300)
    assert first.returncode == 0, first.stderr
    (cached,) = [p for p in (tmp_path / "results" / "baselines").glob("*.pt") if not p.name.endswith(".init.pt")]
    cached.write_bytes(b"garbage" * 10)
    second = run_cli(*args, results=tmp_path / "results", timeout=300)
    assert second.returncode == 0, second.stderr
    assert "is corrupt" in second.stderr and "retraining" in second.stderr
    assert cached.stat().st_size > 1000  # rewritten with real weights


def test_missing_data_names_the_fetch_command(tmp_path):
    result = run_cli("run", "--ratio", "4", results=tmp_path / "results", data=tmp_path / "empty")
    assert result.returncode == 2
    assert "fetch it with: make data DATASET=fashion-mnist" in result.stderr
    assert not (tmp_path / "results" / "mlflow.db").exists()


def test_unreachable_ratio_is_bad_input_and_tracks_nothing(tmp_path):
    result = run_cli("run", "--dataset", "digits", "--ratio", "5000", "--epochs", "0", results=tmp_path / "results")
    assert result.returncode == 2 and "out of reach" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_help_lists_methods_datasets_and_models(tmp_path):
    result = run_cli("run", "--help", results=tmp_path)
    assert result.returncode == 0
    for name in ("magnitude", "fashion-mnist", "mnist-5k", "lenet300", "lenet5"):
        assert name in result.stdout


def test_help_does_not_import_lightning_or_mlflow(tmp_path):
    code = "import sys; from bench.cli import build_parser; build_parser(); print('lightning' in sys.modules, 'mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False False"


def test_one_run_end_to_end_through_the_cli(tmp_path):
    result = run_cli("run", "--dataset", "digits", "--model", "mlp", "--ratio", "4", "--epochs", "2",
                     "--finetune-epochs", "1", results=tmp_path / "results", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "magnitude" in result.stdout and "achieved 4.0" in result.stdout
    assert (tmp_path / "results" / "mlflow.db").exists()


def test_compare_lists_one_study_per_variant_under_the_protocol(capsys):
    from bench.cli import main
    from bench.comparison_studies import comparison_variants

    assert main(["compare", "--dataset", "digits", "--model", "mlp", "--seeds", "3", "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    # 7 built-in methods at their defaults, random pruning, and the example plugin the tests register (taylor)
    assert len(lines) == len(comparison_variants()) == 9
    assert all(" --protocol fair " in line and "--seeds 3" in line for line in lines)
    assert {line.split("--method ")[1].split()[0] for line in lines} == {
        "magnitude", "rate-distortion", "coreset", "multihash", "lma", "lq", "sap", "taylor"}


def test_compare_refuses_an_unknown_method_with_one_line(capsys):
    from bench.cli import main

    assert main(["compare", "--methods", "magnitude,prune-it-all", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown prune-it-all" in err[0]


def test_compare_hands_allow_large_to_every_study(capsys):
    from bench.cli import main

    assert main(["compare", "--dataset", "digits", "--model", "mlp", "--seeds", "20", "--allow-large",
                 "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines and all("--seeds 20" in line and "--allow-large" in line for line in lines)


def test_reproduce_help_lists_every_paper_it_accepts(capsys):
    from bench.cli import main
    from bench.papers import list_papers

    with pytest.raises(SystemExit):
        main(["reproduce", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(paper in text for paper in list_papers()) and "one of coreset, magnitude" in text
