"""The `brainmill` console script."""

import subprocess
import sys

from brainmill.cli import main


def test_help_lists_commands(capsys):
    try:
        main(["--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
    out = capsys.readouterr().out
    for cmd in ("datasets", "info", "schema", "check-config", "validate", "run"):
        assert cmd in out


def test_datasets_lists_every_source(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for kind in ("synthetic", "eegbci", "files", "bids"):
        assert f"  {kind}" in out


def test_info_prints_versions_and_gpu_line(capsys):
    import mne

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert mne.__version__ in out
    assert "GPU" in out


def test_check_config_reports_a_typo_without_traceback(tmp_path, capsys):
    bad = tmp_path / "c.yaml"
    bad.write_text("seeed: 1\ndatasets: {}\n")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'seed'" in err and "Traceback" not in err


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "brainmill.cli", "datasets"],
                         capture_output=True, text=True, check=True).stdout
    assert "eegbci" in out
