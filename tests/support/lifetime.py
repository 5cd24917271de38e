# SPDX-License-Identifier: Apache-2.0
"""How long a helper process of the tests may live: until SIGTERM, or a bound in seconds, so
that a forgotten helper can never outlive a test run."""
import signal
import time


class Lifetime:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds
        self.stopped = False
        signal.signal(signal.SIGTERM, self._stop)

    def _stop(self, *_):
        self.stopped = True

    def running(self):
        return not self.stopped and time.monotonic() < self.end
