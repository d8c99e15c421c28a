"""The bridge between a Snakemake ``script:`` and the package.

``scripts/*.py`` only translate the ``snakemake`` object into a function call; this module gives
them the same logging and error handling: log lines go to the rule's ``log:`` file (and stderr),
a :class:`~vlmprobe.errors.VlmprobeError` becomes one clear log line and exit status 1.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from vlmprobe.errors import VlmprobeError

log = logging.getLogger("vlmprobe")


def configure_logging(log_file: str | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)


def run_script(main: Callable[[Any], None], smk: Any) -> None:
    """Run ``main(smk)`` with logging to the rule's first log file; user errors exit 1 with one line."""
    log_files = list(getattr(smk, "log", []) or [])
    configure_logging(log_files[0] if log_files else None)
    try:
        main(smk)
    except VlmprobeError as error:
        log.error("%s", error)
        sys.exit(1)


def test_hold(variable: str, what: str) -> Callable[[int], None] | None:
    """A test hook (tests/test_faults.py): with ``variable`` set to N in the environment, a hook that holds the job,
    once N ``what`` are done and saved, until it is killed, so a test kills Snakemake at a known point rather than
    by winning a race; None when the variable is not set (every real run)."""
    if variable not in os.environ:
        return None
    wanted = int(os.environ[variable])

    def hook(finished: int) -> None:
        if finished >= wanted:
            logging.getLogger(__name__).warning("%s=%d: holding after %d %s until killed", variable, wanted, finished, what)
            while True:
                time.sleep(60)

    return hook
