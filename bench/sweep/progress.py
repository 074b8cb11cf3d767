"""What a sweep tells the user as it goes: its messages on stderr, a line per finished trial, and the progress bar;
and the study's trials counted by state, which all of them read.
"""
from __future__ import annotations

import sys
from typing import Any

from bench.sweep.plan import SweepConfig
from bench.sweep.front import pareto_front


def _log(cfg: SweepConfig, message: str) -> None:
    if not cfg.quiet:
        from tqdm import tqdm

        tqdm.write(message, file=sys.stderr)  # above a progress bar, when one is shown


def _state_counts(study: Any) -> dict[str, int]:
    from collections import Counter

    return Counter(t.state.name for t in study.get_trials(deepcopy=False))


def _report_trial(cfg: SweepConfig, study: Any, trial: Any, worker: int, bar: SweepProgress | None = None) -> None:
    counts = _state_counts(study)
    if bar is not None:
        bar.update(study)
    head = f"[{counts.get('COMPLETE', 0)}/{cfg.target} complete, {counts.get('FAIL', 0)} failed] worker {worker} trial #{trial.number}"
    if trial.state.name == "COMPLETE":
        a = trial.user_attrs
        what = (f" {a['settings_label']}" if a.get("settings_label", "defaults") != "defaults" else "") + \
            (f" [{a['stage']}: {'seed 0' if a['stage'] == 'tune' else 'every seed, controls'}]" if "stage" in a else "")
        _log(cfg, f"{head}: ratio {trial.params['ratio']:g} lr {trial.params.get('lr', float('nan')):g}{what} -> val {a['val_acc_top1_mean']:.4f} test {a['acc_top1_mean']:.4f} "
                  f"(achieved {a['compression_ratio_mean']:.2f}x), Pareto front size {len(pareto_front(study))}")
    else:
        _log(cfg, f"{head}: {trial.state.name} {trial.user_attrs.get('error', '')}")


class SweepProgress:
    """The sweep's progress bar (tqdm, on stderr): trials finished of the target, the point(s) being run, and
    tqdm's rate and ETA. Lives in the main process; with several workers it polls the study."""

    def __init__(self, cfg: SweepConfig, study: Any) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=cfg.target, initial=self._finished(study), unit="trial", file=sys.stderr,
                        desc=f"{cfg.template.method} {cfg.mode}", dynamic_ncols=True, smoothing=0)

    @staticmethod
    def _finished(study: Any) -> int:
        counts = _state_counts(study)
        return counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) + counts.get("FAIL", 0)

    def running(self, number: int, ratio: float, lr: float) -> None:
        self.bar.set_postfix_str(f"trial #{number}: {ratio:g}x lr {lr:g}")

    def update(self, study: Any) -> None:
        self.bar.update(max(0, min(self._finished(study), self.bar.total) - self.bar.n))
        points = [f"{t.params['ratio']:g}x lr {t.params.get('lr', float('nan')):g}"
                  for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING" and "ratio" in t.params]
        self.bar.set_postfix_str(f"running {', '.join(points)}" if points else "")

    def close(self) -> None:
        self.bar.close()
