"""The one exception type for mistakes a user can make and fix.

Scripts catch :class:`VlmprobeError`, log its message as one line and exit non-zero, so a bad
input never shows up as a Python traceback buried in a cluster log.
"""

from __future__ import annotations


class VlmprobeError(Exception):
    """A user-fixable problem: the message names the file, row or key and says how to fix it."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem} Fix: {fix}")
