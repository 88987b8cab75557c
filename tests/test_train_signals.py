"""fastgan.train.signals.StopSignals alone: SIGINT/SIGTERM are recorded, not acted on,
a second signal reaches the previous handler, restore() puts the handlers back."""

import os
import signal
import threading

import pytest

from fastgan.train.signals import StopSignals


@pytest.fixture
def recorded_handlers():
    """A recording handler installed for SIGINT and SIGTERM, the original ones back after."""
    received = []
    original = {sig: signal.getsignal(sig) for sig in StopSignals.SIGNALS}
    for sig in StopSignals.SIGNALS:
        signal.signal(sig, lambda signum, frame: received.append(signum))
    yield received
    for sig, handler in original.items():
        signal.signal(sig, handler)


def test_first_signal_is_recorded_and_second_reaches_the_previous_handler(recorded_handlers):
    stop = StopSignals()
    assert not stop.requested and stop.name is None
    stop.install()
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.requested and stop.signum == signal.SIGTERM and stop.name == "SIGTERM"
    assert recorded_handlers == []  # the first one did not reach the previous handler
    os.kill(os.getpid(), signal.SIGINT)
    assert recorded_handlers == [signal.SIGINT]
    assert stop.name == "SIGTERM"  # the first signal is the one reported
    stop.restore()


def test_restore_puts_back_the_previous_handlers_and_keeps_the_request(recorded_handlers):
    previous = {sig: signal.getsignal(sig) for sig in StopSignals.SIGNALS}
    stop = StopSignals()
    stop.install()
    assert all(signal.getsignal(sig) is not previous[sig] for sig in StopSignals.SIGNALS)
    os.kill(os.getpid(), signal.SIGINT)
    stop.restore()
    assert all(signal.getsignal(sig) is previous[sig] for sig in StopSignals.SIGNALS)
    os.kill(os.getpid(), signal.SIGTERM)
    assert recorded_handlers == [signal.SIGTERM]
    stop.install()  # a stopped run stays stopped when installed again
    assert stop.name == "SIGINT"
    stop.restore()


def test_outside_the_main_thread_nothing_is_installed(recorded_handlers):
    previous = {sig: signal.getsignal(sig) for sig in StopSignals.SIGNALS}
    stop = StopSignals()
    worker = threading.Thread(target=stop.install)
    worker.start()
    worker.join()
    assert all(signal.getsignal(sig) is previous[sig] for sig in StopSignals.SIGNALS)
    stop.restore()  # nothing to restore: no error
    assert all(signal.getsignal(sig) is previous[sig] for sig in StopSignals.SIGNALS)
