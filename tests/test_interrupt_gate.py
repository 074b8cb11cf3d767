"""The SIGINT handler of a process that runs trials, with a real signal: a Ctrl-C while a trial is being claimed
waits until the trial names its worker (else it would stay RUNNING with no owner to fail it)."""
import os
import signal

import pytest

from bench.sweep.workers import InterruptGate


def _ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)  # delivered to the main thread before the next bytecode runs


def test_a_ctrl_c_outside_a_claim_interrupts_at_once_and_a_second_one_is_ignored():
    gate = InterruptGate()
    with gate.installed():
        with pytest.raises(KeyboardInterrupt):
            _ctrl_c()
        _ctrl_c()  # the clean-up of the first is not cut short
        assert gate.interrupted
    assert signal.getsignal(signal.SIGINT) is not gate  # the handler before it is back


def test_a_ctrl_c_while_claiming_waits_for_the_trial_to_name_its_worker():
    gate = InterruptGate()
    reached = []
    with gate.installed():
        with pytest.raises(KeyboardInterrupt, match="claimed"):
            with gate.holding():
                _ctrl_c()
                reached.append("trial created")  # the claim goes on: nothing raised here
                gate.release()  # the objective, once the trial carries its worker
                reached.append("after release")
    assert reached == ["trial created"] and gate.interrupted


def test_a_ctrl_c_while_claiming_a_point_that_never_starts_raises_when_the_claim_ends():
    gate = InterruptGate()
    with gate.installed():
        with pytest.raises(KeyboardInterrupt):
            with gate.holding():
                _ctrl_c()
        with gate.holding():  # nothing deferred once raised
            pass


def test_without_a_ctrl_c_the_claim_and_release_raise_nothing():
    gate = InterruptGate()
    with gate.installed():
        with gate.holding():
            gate.release()
        with gate.holding():
            pass
    assert not gate.interrupted
