"""Every test runs once per backend in --backends (default "numpy,strict"; "cupy" on a GPU machine).

Mark a test ``@pytest.mark.backends("numpy")`` to run it under fewer backends (host-only code needs one run).
"""
import os

import pytest

import tinyvae


def pytest_addoption(parser):
    parser.addoption("--backends", default=os.environ.get("TINYVAE_TEST_BACKENDS", "numpy,strict"),
                     help="comma-separated backends to run every test under (numpy, strict, cupy)")


def pytest_generate_tests(metafunc):
    if "backend" not in metafunc.fixturenames:
        return
    names = [b.strip() for b in metafunc.config.getoption("--backends").split(",") if b.strip()]
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is not None:
        names = [b for b in names if b in marker.args] or names[:0]
    if not names:
        metafunc.parametrize("backend", [pytest.param("none", marks=pytest.mark.skip(
            reason="not run under the selected backends"))], indirect=True)
        return
    metafunc.parametrize("backend", names, indirect=True)


@pytest.fixture(autouse=True)
def backend(request):
    """Switch tinyvae to this test's backend (float32 default dtype), and back to numpy afterwards."""
    name = getattr(request, "param", "numpy")
    if name != "none":
        tinyvae.use(name)
        tinyvae.set_default_dtype("float32")
    yield name
    tinyvae.use("numpy")
    tinyvae.set_default_dtype("float32")


@pytest.fixture
def xp(backend):
    return tinyvae.get_xp()


def pytest_collection_modifyitems(config, items):
    try:
        tinyvae.use("cupy")
        has_gpu = True
    except tinyvae.BackendUnavailable:
        has_gpu = False
    finally:
        tinyvae.use("numpy")
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip)
