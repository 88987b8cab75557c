"""Stopping a run cleanly: SIGINT and SIGTERM ask the training loop to stop after the
current step (it then writes a checkpoint) instead of killing it mid-step."""

from __future__ import annotations

import signal
import threading


class StopSignals:
    """While installed, SIGINT/SIGTERM are recorded in `signum` (the first one only)
    rather than acted on; the previous handlers come back at the first signal, so a
    second one acts as usual (Ctrl-C twice kills a stuck run), and at restore().

    Handlers can only be installed from the main thread; elsewhere install() does
    nothing and the run cannot be stopped by a signal. A recorded signal stays recorded
    across install/restore pairs (a stopped Trainer stops again at once).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str | None:
        """'SIGINT' or 'SIGTERM' once one arrived, else None."""
        return signal.Signals(self.signum).name if self.signum is not None else None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        previous = {}

        def request_stop(signum, frame):
            self.signum = signum
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        for sig in self.SIGNALS:
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, request_stop)
        self._previous = previous

    def restore(self) -> None:
        for sig, handler in (self._previous or {}).items():
            signal.signal(sig, handler)
        self._previous = None
