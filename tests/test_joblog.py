"""Per-job logging and the fast end of a finished workflow job."""

import subprocess
import sys
import textwrap

import pytest

from brainmill.errors import DataError
from brainmill.joblog import job_logging


def _run(code: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def test_end_job_flushes_logs_streams_and_atexit_handlers(tmp_path):
    res = _run("""
        import atexit, logging, sys
        from brainmill.joblog import end_job, job_logging
        atexit.register(lambda: open("atexit.txt", "w").write("ran"))
        with job_logging("job.log", "demo job"):
            logging.getLogger("brainmill").info("the result line")
        print("unflushed stdout", end="")
        sys.stderr.write("unflushed stderr")
        end_job()
        open("after.txt", "w").write("never reached")
    """, tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "unflushed stdout"
    assert res.stderr.endswith("unflushed stderr")
    log = (tmp_path / "job.log").read_text()
    assert "the result line" in log and "done demo job" in log
    assert (tmp_path / "atexit.txt").read_text() == "ran"
    assert not (tmp_path / "after.txt").exists()


def test_a_failed_job_never_reaches_end_job_and_exits_with_status_1(tmp_path):
    res = _run("""
        from brainmill.errors import DataError
        from brainmill.joblog import end_job, job_logging
        with job_logging("job.log", "demo job"):
            raise DataError("no epochs", file="x.fif", subject="3")
        end_job()
    """, tmp_path)
    assert res.returncode == 1
    log = (tmp_path / "job.log").read_text()
    assert "FAILED demo job: DataError" in log and "x.fif" in log


def test_job_logging_in_process_turns_a_brainmill_error_into_system_exit(tmp_path):
    with pytest.raises(SystemExit) as info, job_logging(tmp_path / "job.log", "demo"):
        raise DataError("bad", subject="1")
    assert info.value.code == 1
    assert "FAILED demo" in (tmp_path / "job.log").read_text()


def test_limit_kernel_threads_sets_numba_to_the_jobs_cores(tmp_path, monkeypatch):
    """Before numba is imported the job's count goes to NUMBA_NUM_THREADS; after, numba's
    thread count is set directly."""
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one CPU: numba has a single thread whatever the limit")
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    res = _run("""
        import sys
        from brainmill.joblog import limit_kernel_threads
        assert "numba" not in sys.modules
        limit_kernel_threads(1)
        import numba
        print(numba.get_num_threads())
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        limit_kernel_threads(1)  # numba already imported: set directly
        print(numba.get_num_threads())
    """, tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["1", "1"]


def test_limit_kernel_threads_keeps_a_larger_exported_value(tmp_path, monkeypatch):
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one CPU: numba has a single thread whatever the limit")
    monkeypatch.setenv("NUMBA_NUM_THREADS", "2")
    res = _run("""
        from brainmill.joblog import limit_kernel_threads
        limit_kernel_threads(1)
        import numba
        print(numba.get_num_threads())
    """, tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["2"]
