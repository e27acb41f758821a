"""Start-up savings for workflow jobs that never touch torch.

pyriemann 0.12 imports torch, when it is installed, for its optional array-API backend
(``pyriemann/geometry/_backend.py``), so every classical job (covariance features, tangent
space, CSP, ACM) paid about a second for a torch it never uses. brainmill always hands
pyriemann numpy arrays, and pyriemann supports running without torch, so the classical
workflow scripts call :func:`hide_torch_from_pyriemann` first. Not for notebooks: there a
user may want pyriemann's torch backend.
"""

from __future__ import annotations

import importlib.abc
import sys

_BACKEND = "pyriemann.geometry._backend"


class _HideTorchFromPyriemann(importlib.abc.MetaPathFinder):
    """Fails ``import torch`` while (and only while) pyriemann's backend module is executing."""

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001 (importlib's protocol)
        if name != "torch":
            return None
        backend = sys.modules.get(_BACKEND)
        # the backend module is in sys.modules while it runs; it sets ``torch`` when done
        if backend is not None and not hasattr(backend, "torch"):
            raise ModuleNotFoundError("No module named 'torch' (hidden from pyriemann)",
                                      name=name)
        return None


def hide_torch_from_pyriemann() -> bool:
    """Make a later ``import pyriemann`` skip its optional torch backend.

    Nothing is imported here, so a job that ends up not needing pyriemann pays nothing. Where
    torch or pyriemann is already imported this does nothing (returns False): pyriemann then
    keeps whatever backend it has. torch itself stays importable; only pyriemann's backend
    has ``torch = None``, so pyriemann must be given numpy arrays (brainmill always does).

    Returns
    -------
    bool
        True when the hook is in place for the next pyriemann import.
    """
    if "pyriemann" in sys.modules or "torch" in sys.modules:
        return False
    if not any(isinstance(f, _HideTorchFromPyriemann) for f in sys.meta_path):
        sys.meta_path.insert(0, _HideTorchFromPyriemann())
    return True
