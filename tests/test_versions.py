"""Library versions recorded in reports: right values, without importing the libraries."""

import pytest

from brainmill import __version__
from brainmill.versions import LIBRARIES, library_versions


@pytest.mark.parametrize("name", LIBRARIES)
def test_each_version_equals_the_imported_modules_version(name):
    module = pytest.importorskip(name)
    expected = getattr(module, "__version__", None)
    if expected is None:
        pytest.skip(f"{name} has no __version__ to compare with")
    assert library_versions([name])[name] == expected


def test_brainmill_itself_and_a_missing_library():
    versions = library_versions(["no_such_library_xyz"])
    assert versions == {"brainmill": __version__, "no_such_library_xyz": "not installed"}


def test_reading_versions_imports_none_of_the_heavy_libraries(modules_loaded_by):
    loaded = modules_loaded_by("from brainmill.versions import library_versions\n"
                               "library_versions()")
    assert not loaded & {"torch", "pyriemann", "nilearn", "sklearn", "mne_bids"}
