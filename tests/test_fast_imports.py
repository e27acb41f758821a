"""pyriemann with its torch backend hidden gives the same numbers, and torch stays usable."""

import subprocess
import sys
import textwrap

import numpy as np

from brainmill.fast_imports import hide_torch_from_pyriemann

_PIPELINES = """
import numpy as np
from pyriemann.classification import MDM
from pyriemann.estimation import Covariances
from pyriemann.spatialfilters import CSP
from pyriemann.tangentspace import TangentSpace

def results(X, y):
    covs = Covariances("oas").fit_transform(X)
    return {"covs": covs, "ts": TangentSpace(metric="riemann").fit_transform(covs),
            "csp": CSP(nfilter=4, log=True).fit_transform(covs, y),
            "mdm": MDM().fit(covs, y).predict_proba(covs)}
"""


def test_pyriemann_without_its_torch_backend_matches_the_ordinary_import(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6, 200))
    y = np.repeat([0, 1], 20)
    X[y == 1, 0] *= 2.0  # a class difference for CSP and MDM to find
    np.savez(tmp_path / "data.npz", X=X, y=y)
    code = textwrap.dedent(f"""
        import sys
        from brainmill.fast_imports import hide_torch_from_pyriemann
        assert hide_torch_from_pyriemann()
        {textwrap.indent(_PIPELINES, "        ").strip()}
        d = np.load("data.npz")
        np.savez("hidden.npz", **results(d["X"], d["y"]))
        import pyriemann.geometry._backend as backend
        assert backend.torch is None and "torch" not in sys.modules
        import torch  # still importable for anything else in the job
        print(torch.ones(2).sum().item())
    """)
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "2.0"
    namespace: dict = {}
    exec(_PIPELINES, namespace)
    expected = namespace["results"](X, y)
    hidden = np.load(tmp_path / "hidden.npz")
    for key, value in expected.items():
        np.testing.assert_allclose(hidden[key], value, rtol=1e-10, atol=1e-12, err_msg=key)


def test_a_process_that_already_has_torch_or_pyriemann_is_left_alone():
    import pyriemann  # noqa: F401 (the test process has it)

    before = list(sys.meta_path)
    assert hide_torch_from_pyriemann() is False
    assert sys.meta_path == before
