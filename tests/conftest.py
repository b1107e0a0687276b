"""Every test runs once per backend in --backends (default "numpy,strict,fakecupy"; "cupy" on a GPU machine).

"fakecupy" is tinyvae's own "cupy" backend with CuPy replaced by the NumPy stand-in ``tinyvae.testing.fakecupy``
(installed for the test, then removed): the library's CuPy code paths run, and the tests marked ``gpu`` or
``backends("cupy")`` run under it too. Mark a test ``@pytest.mark.backends("numpy")`` to run it under fewer
backends (host-only code needs one run).
"""
import importlib
import os

import pytest

import tinyvae
from tinyvae import backend as B
from tinyvae.testing import fakecupy

# Optional test packages (the "test" extra), by module name: a test that needs one is marked
# ``@pytest.mark.needs("array_api_strict")`` and is skipped, naming the package, where it is not installed.
OPTIONAL = {"array_api_strict": "array-api-strict", "nbclient": "nbclient", "hypothesis": "hypothesis"}
_missing = {}


def missing(module):
    """True when the optional ``module`` cannot be imported here."""
    if module not in _missing:
        try:
            importlib.import_module(module)
            _missing[module] = False
        except ImportError:
            _missing[module] = True
    return _missing[module]


def needs_reason(module):
    return f"needs the optional package {OPTIONAL.get(module, module)} (pip install 'tinyvae[test]')"


def pytest_addoption(parser):
    parser.addoption("--backends", default=os.environ.get("TINYVAE_TEST_BACKENDS", "numpy,strict,fakecupy"),
                     help="comma-separated backends to run every test under (numpy, strict, fakecupy, cupy)")


def pytest_generate_tests(metafunc):
    if "backend" not in metafunc.fixturenames:
        return
    names = [b.strip() for b in metafunc.config.getoption("--backends").split(",") if b.strip()]
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is not None:
        names = [b for b in names if b in marker.args or (b == "fakecupy" and "cupy" in marker.args)]
    if not names:
        metafunc.parametrize("backend", [pytest.param("none", marks=pytest.mark.skip(
            reason="not run under the selected backends"))], indirect=True)
        return
    params = [pytest.param(b, marks=pytest.mark.skip(reason=needs_reason("array_api_strict")))
              if b == "strict" and missing("array_api_strict") else b for b in names]
    metafunc.parametrize("backend", params, indirect=True)


@pytest.fixture(autouse=True)
def backend(request):
    """Switch tinyvae to this test's backend (float32 default dtype), and back to numpy afterwards."""
    name = getattr(request, "param", "numpy")
    undo = fakecupy.install(B) if name == "fakecupy" else None
    try:
        if name != "none":
            tinyvae.use("cupy" if name == "fakecupy" else name)
            tinyvae.set_default_dtype("float32")
        yield "cupy" if name == "fakecupy" else name  # the library's name for it: tests compare with backend_name()
    finally:
        tinyvae.use("numpy")
        tinyvae.set_default_dtype("float32")
        if undo is not None:
            undo()


@pytest.fixture
def xp(backend):
    return tinyvae.get_xp()


def pytest_collection_modifyitems(config, items):
    try:
        tinyvae.use("cupy")
        why_not = None
    except tinyvae.BackendUnavailable as err:  # "CuPy is not installed" or "... found no usable CUDA device"
        why_not = str(err).split(". ")[0].replace("backend 'cupy': ", "")
    finally:
        tinyvae.use("numpy")
    skip = pytest.mark.skip(reason=f"needs CuPy and a CUDA device ({why_not})")
    for item in items:
        on_fake = getattr(getattr(item, "callspec", None), "params", {}).get("backend") == "fakecupy"
        if item.get_closest_marker("gpu") is not None and why_not is not None and not on_fake:
            item.add_marker(skip, append=False)  # this reason first, before "not run under the selected backends"
        for marker in item.iter_markers("needs"):
            for module in marker.args:
                if missing(module):
                    item.add_marker(pytest.mark.skip(reason=needs_reason(module)))
