"""Progress lines for long exports, conversions and verifications: `[  12.3s] stage` on stderr.

progress = stderr_progress(quiet=False)
progress("tracing the backbone")          # prints "[   0.0s] tracing the backbone" to stderr
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def stderr_progress(quiet: bool = False) -> Callable[[str], None]:
    """A callback printing each stage with the seconds since it was made (nothing when `quiet`)."""
    start = time.perf_counter()

    def report(message: str) -> None:
        if not quiet:
            print(f"[{time.perf_counter() - start:6.1f}s] {message}", file=sys.stderr, flush=True)

    return report
