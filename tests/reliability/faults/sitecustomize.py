"""Fault injection for the reliability tests; inert unless ``BRAINMILL_TEST_FAULT`` is set.

Put this folder on ``PYTHONPATH`` of a subprocess (a job, or Snakemake and all its jobs) and set

``BRAINMILL_TEST_FAULT="<when>:<path ending>"``

where ``<when>`` is ``before-rename`` (the process dies after writing the temporary file, before
:func:`os.replace` moves it into place: killed mid-write) or ``after-rename`` (it dies right after
the rename, before the job could finish: Snakemake never learns that the output is complete).
The first :func:`os.replace` whose destination ends with ``<path ending>`` triggers a SIGKILL of
the process, or of its whole process group with ``BRAINMILL_TEST_FAULT_GROUP=1`` (a crash of
Snakemake and every job it runs).
"""

import os
import signal

_SPEC = os.environ.get("BRAINMILL_TEST_FAULT")

if _SPEC:
    _WHEN, _, _ENDING = _SPEC.partition(":")
    if _WHEN not in ("before-rename", "after-rename") or not _ENDING:
        raise SystemExit(f"BRAINMILL_TEST_FAULT={_SPEC!r}: expected "
                         "'before-rename:<path ending>' or 'after-rename:<path ending>'")
    _replace = os.replace

    def _die() -> None:
        if os.environ.get("BRAINMILL_TEST_FAULT_GROUP") == "1":
            os.killpg(os.getpgid(0), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    def _faulty_replace(src, dst, *args, **kwargs):
        hit = os.fspath(dst).endswith(_ENDING)
        if hit and _WHEN == "before-rename":
            _die()
        _replace(src, dst, *args, **kwargs)
        if hit:
            _die()

    os.replace = _faulty_replace
