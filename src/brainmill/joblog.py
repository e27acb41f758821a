"""Per-job logging for workflow scripts: everything, including the failure, goes to the log."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path

import mne

from .errors import BrainmillError

logger = logging.getLogger("brainmill")


@contextlib.contextmanager
def job_logging(log_path: str | Path | None, job: str) -> Iterator[logging.Logger]:
    """Send brainmill's, MNE's and Python's warnings to ``log_path`` for one job.

    On an exception the log gets one ``FAILED`` line with the error's own message (which
    names the file, subject and expectation for brainmill errors) and the traceback, and the
    job fails so that Snakemake marks it failed and removes its outputs:

    * a :class:`~brainmill.errors.BrainmillError` (bad input, impossible setting, full disk)
      ends the process with exit status 1 (:class:`SystemExit`); the console shows the
      ``FAILED`` line only, the traceback stays in the log for a bug report;
    * any other exception is a bug: it is re-raised with its traceback.

    Parameters
    ----------
    log_path : str | Path | None
        The rule's log file; ``None`` logs to stderr only.
    job : str
        A readable job name, e.g. ``"preprocess synthetic sub-1"``.
    """
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)  # the full story is in the log file
    handlers: list[logging.Handler] = [console]
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for h in handlers:
        h.setFormatter(fmt)
    targets = [logger, logging.getLogger("mne"), logging.getLogger("py.warnings")]
    for lg in targets:
        for h in handlers:
            lg.addHandler(h)
        lg.setLevel(logging.INFO)
    mne.set_log_level("WARNING")
    logging.captureWarnings(True)
    start = time.perf_counter()
    logger.info("start %s", job)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            yield logger
    except BrainmillError as err:
        logger.error("FAILED %s: %s: %s", job, type(err).__name__, err)
        logger.info("traceback (for a bug report):\n%s", traceback.format_exc())
        raise SystemExit(1) from err
    except Exception as err:
        logger.error("FAILED %s: %s: %s", job, type(err).__name__, err)
        logger.error("traceback:\n%s", traceback.format_exc())
        raise
    else:
        logger.info("done %s in %.1f s", job, time.perf_counter() - start)
    finally:
        logging.captureWarnings(False)
        for lg in targets:
            for h in handlers:
                lg.removeHandler(h)
        for h in handlers:
            h.close()


def limit_kernel_threads(threads: int | None) -> None:
    """Keep brainmill's compiled kernels (numba) to the job's cores (Snakemake's ``threads``).

    numba reads ``NUMBA_NUM_THREADS`` when it is first imported, so a script calls this before
    anything imports numba; if it already has been, its thread count is set directly. A value
    the user exported is kept. BLAS threads are left as they are.
    """
    if not threads:
        return
    threads = max(1, int(threads))
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    else:
        os.environ.setdefault("NUMBA_NUM_THREADS", str(threads))


def end_job() -> None:
    """End a workflow job that has finished, without the interpreter's teardown.

    Called as the last line of every workflow script, after :func:`job_logging` has returned
    normally (a failure raises before it, so a failed job exits the ordinary way with its
    traceback and status). The ``atexit`` handlers still run (logging's flush and close among
    them) and the standard streams are flushed; only the freeing of every module (torch,
    pyriemann, nilearn, matplotlib) is skipped. That teardown takes about 1 s per process with
    those modules loaded (``BENCHMARKS.md``), and the default run has over a hundred jobs.
    Every output has been written and closed by then (:func:`brainmill.io.atomic_path`).

    Never call this from a notebook or a test process: it ends the process.
    """
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)
