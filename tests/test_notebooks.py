"""The teaching notebooks: stored clean (no outputs), importing the library rather than redefining it, and running
top to bottom in quick mode (TINYVAE_QUICK=1) in a kernel of this very Python.

The notebooks pick their backend themselves, so these tests run once (under the numpy backend).
"""
import ast
import os
import re
import sys
from pathlib import Path

import pytest

import tinyvae

nbformat = pytest.importorskip("nbformat")

pytestmark = pytest.mark.backends("numpy")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
EXPECTED = ("01_autoencoder_and_pca", "02_vae_step_by_step", "03_latent_space", "04_gpu_with_cupy",
            "05_beyond_the_blur", "06_conditional_and_iwae", "07_convolutions_by_hand",
            "08_cs236_mixture_prior_and_m2")


def _read(path):
    return nbformat.read(str(path), as_version=nbformat.NO_CONVERT)


def _code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def _python_source(cell):
    """A code cell's source as plain Python: IPython magics (%..., !...) become blank lines."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in cell.source.splitlines())


def _library_names():
    """Public names of tinyvae and of its modules: a notebook must call these, not define its own."""
    modules = [tinyvae, tinyvae.losses, tinyvae.gradcheck, tinyvae.train, tinyvae.models, tinyvae.experiments,
               tinyvae.layers, tinyvae.activations, tinyvae.module, tinyvae.optim, tinyvae.pca, tinyvae.reparam,
               tinyvae.conv, tinyvae.conv_models, tinyvae.gan, tinyvae.gmvae, tinyvae.ssvae]
    from tinyvae import metrics, plots

    modules += [plots, metrics]
    return {name for m in modules for name in vars(m) if not name.startswith("_")}


def test_every_notebook_is_there():
    assert [p.stem for p in NOTEBOOKS] == list(EXPECTED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_clean(path):
    """Valid nbformat v4 with a python3 kernelspec, and no outputs or execution counts in any cell."""
    nb = _read(path)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    dirty = [i for i, cell in enumerate(nb.cells)
             if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs or execution counts; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_setup_cell(path):
    """The first code cell imports tinyvae, reads the quick-mode switch, picks the backend and seeds."""
    first = _code_cells(_read(path))[0].source
    for needed in ("import tinyvae as tv", 'QUICK = os.environ.get("TINYVAE_QUICK") == "1"', 'tv.use("numpy")',
                   "tv.seed(SEED)"):
        assert needed in first, f"{path.name}: the first code cell lacks {needed!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_library_code_redefined(path):
    """No Module subclasses, no forward/backward methods, no function or class named like a library one."""
    library = _library_names()
    for i, cell in enumerate(_read(path).cells):
        if cell.cell_type != "code":
            continue
        tree = ast.parse(_python_source(cell), filename=f"{path.name} cell {i}")
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases}
                assert not bases & {"Module", "Sequential", "Dense"}, \
                    f"{path.name} cell {i} subclasses {bases}: import the library's modules instead"
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                assert node.name not in {"forward", "backward"} | library, \
                    f"{path.name} cell {i} defines {node.name!r}, which the library already provides"


def _makes_figure(cell):
    """Whether a code cell calls a figure-making function: any public function of tinyvae.plots (each returns a
    Figure) or pyplot's plt.figure / plt.subplots."""
    from tinyvae import plots

    makers = {("plots", name) for name, value in vars(plots).items()
              if callable(value) and not name.startswith("_") and getattr(value, "__module__", "") == plots.__name__}
    makers |= {("plt", "figure"), ("plt", "subplots")}
    return any(isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
               and isinstance(node.func.value, ast.Name) and (node.func.value.id, node.func.attr) in makers
               for node in ast.walk(ast.parse(_python_source(cell))))


def test_figure_cells_are_recognised():
    """The check below that every figure cell shows an image must see the figure cells: at least one per notebook,
    and in notebook 07 the im2col drawing and the two VAEs' samples."""
    found = {path.stem: [i for i, cell in enumerate(_read(path).cells)
                         if cell.cell_type == "code" and _makes_figure(cell)] for path in NOTEBOOKS}
    assert all(found.values()), found
    nb07 = _read(NOTEBOOKS[EXPECTED.index("07_convolutions_by_hand")])
    sources = [nb07.cells[i].source for i in found["07_convolutions_by_hand"]]
    assert any("plt.subplots" in s for s in sources) and any("plots.samples" in s for s in sources)
    assert not _makes_figure(nbformat.v4.new_code_cell("x = plots.WRAP\nprint(plt.rcParams)"))


@pytest.fixture(scope="module")
def kernel_spec_manager(tmp_path_factory):
    """A kernelspec named python3 that launches THIS interpreter (sys.executable), and nothing else.

    Whatever kernelspecs the machine has installed (a user's python3 pointing at another Python, none at all), the
    notebooks then run in the environment under test.
    """
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager

    kernels = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(path=kernels / "python3")  # argv: [sys.executable, "-m", "ipykernel_launcher", ...]
    manager = KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)
    assert manager.get_kernel_spec("python3").argv[0] == sys.executable
    return manager


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_top_to_bottom(path, tmp_path, monkeypatch, kernel_spec_manager):
    """Execute the notebook in quick mode, headless, in a temporary folder; any exception fails with its cell."""
    pytest.importorskip("nbclient", reason="needs the optional package nbclient (pip install 'tinyvae[test]')")
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("TINYVAE_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))  # connection files stay out of $HOME
    for name in ("TINYVAE_BACKEND", "TINYVAE_DTYPE"):
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "work"
    work.mkdir()

    nb = _read(path)
    km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=kernel_spec_manager)
    client = NotebookClient(nb, km=km, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(work)}})
    failure = None
    try:
        client.execute()
    except CellExecutionError as err:  # its message holds the failing cell's source and the traceback
        failure = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # without IPython's colours
    if failure is not None:  # failed outside the except block, so that the report shows the error once
        pytest.fail(f"{path.name} failed in quick mode:\n{failure}", pytrace=False)

    code = _code_cells(nb)
    assert all(cell.execution_count is not None for cell in code), f"{path.name}: not every cell ran"
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: {errors[0].ename}: {errors[0].evalue}"
    assert not os.listdir(work), f"{path.name} wrote files into its working folder: {os.listdir(work)}"
    images = [o for cell in code for o in cell.outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name}: no figure was displayed"
    blank = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and _makes_figure(cell)
             and not any("image/png" in o.get("data", {}) for o in cell.outputs)]
    assert not blank, (f"{path.name}: cells {blank} make a figure but show none (a Figure made with the object API, "
                       "as tinyvae.plots makes them, is shown by display(fig) or as the cell's last expression; "
                       "plt.show() shows only pyplot's own figures)")
    printed = "".join(o.get("text", "") for cell in code for o in cell.outputs if o.output_type == "stream")
    for verdict in VERDICTS.get(path.stem, ()):
        assert re.search(verdict, printed), f"{path.name} did not print its measured verdict {verdict!r}"
    for total in SUMS.get(path.stem, ()):  # a printed "a + b = c" must add up (to the printed rounding)
        found = re.search(total, printed)
        assert found, f"{path.name} did not print {total!r}"
        a, b, c = (float(v) for v in found.groups())
        assert abs(a + b - c) <= 0.1, f"{path.name} prints {found.group(0)!r}, which does not add up"


# Claims about a run's results are computed from its numbers and printed; the prose beside them only explains.
VERDICTS = {
    "01_autoencoder_and_pca": [r"at k = 16, (PCA|the autoencoder) reconstructs the test digits better",
                               r"the autoencoder wins at (k = [\d, ]+|no k tried); PCA wins at",
                               r"closest to the clean digits: "],
    "02_vae_step_by_step": [r"the VAE's reconstructions are (closer to|farther from) the originals and "
                            r"(sharper|blurrier) than notebook 01's autoencoder's",
                            r"the IWAE bound is (tighter \(lower\)|NOT tighter) by"],
    "03_latent_space": [r"as beta grows: reconstruction error (rises|does NOT rise) at every step",
                        r"best true negative ELBO \(recon \+ KL\): beta = ",
                        r"beta = 4 keeps (fewer|NOT fewer) active units than beta = 1"],
    "04_gpu_with_cupy": [r"on (numpy|cupy), a step at batch 128 is (overhead|compute)-bound: 8x the images",
                         r"the fused Adam over the flat buffer is [\d.]+x (faster|slower) than",
                         r"(UNDER-TRAINED|trained): [\d.]+ nats"],
    "05_beyond_the_blur": [r"the mean image's pixel error is (lower|NOT lower) than every real seven's, and it is "
                           r"(blurrier|NOT blurrier)",
                           r"the VAE-GAN's Frechet distance is (lower|NOT lower) than the VAE's",
                           r"the VAE-GAN's sharpness is \d+% (above|below) the test images' \([\d.]+ vs [\d.]+\): "
                           r"(more high-frequency detail|blurrier) than real digits",
                           r"closer to the test images' sharpness \(the smaller \|sharpness - [\d.]+\|\): the "
                           r"(VAE-GAN|VAE)",
                           r"the classifier finds \d+ of 10 digits in more than 2% of the VAE-GAN's samples"],
    "06_conditional_and_iwae": [r"the classifier finds the requested digit in [\d.]+% of \d+ samples",
                                r"beta = 4 draws the requested digit [\d.]+% (more|less) often, with a bound on "
                                r"-log p\(x \| y\) [\d.]+ nats (looser|tighter)",
                                r"the IWAE-trained model's test bound is [\d.]+ nats (tighter|looser) than the VAE's",
                                r"(as many active units as|\d+ (more|fewer) active units than) the VAE",
                                r"Burda et al.'s finding that IWAE training keeps more units active: this run "
                                r"(shows it|does NOT show it)",
                                r"the beta-weighted training loss, recon \+ 4 x KL = [\d.]+ nats per image: what the "
                                r"optimizer minimises, not the ELBO"],
    "08_cs236_mixture_prior_and_m2": [r"all \d+ checks passed",
                                      r"the mixture prior puts (fewer|NOT fewer) of its draws in holes than N\(0, I\)",
                                      r"M2 is (more|NOT more) accurate than the classifier alone: [+-][\d.]+ points"],
}
# Sums printed as "a + b = c" with what c is: the negative ELBO is recon + KL, not the beta-weighted loss.
SUMS = {"06_conditional_and_iwae": [r"recon ([\d.]+) \+ KL ([\d.]+) = ([\d.]+) nats per image, the negative ELBO "
                                    r"\(a bound on -log p\(x \| y\)\)"]}
HARD_CODED = ["a little blurrier than notebook 01", "beats PCA clearly at small", "at every latent size",
              "PCA usually wins everywhere", "far more of them go"]


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem in VERDICTS], ids=lambda p: p.stem)
def test_prose_states_no_result_the_run_did_not_measure(path):
    """Verdicts that depend on the run (which model wins, sharper or blurrier) are printed by code, never fixed in
    the markdown; a squared error is never called nats."""
    text = "\n".join(cell.source for cell in _read(path).cells)
    for phrase in HARD_CODED:
        assert phrase not in text, f"{path.name} says {phrase!r}: print the measured verdict instead"
    if path.stem == "01_autoencoder_and_pca":  # its losses are squared errors (models.loss_units)
        assert "nats per" not in text and "models.loss_units(ae)" in text


def test_the_notebooks_extra_brings_the_progress_widget():
    """tqdm.auto draws one live bar in Jupyter only with ipywidgets; without it every run prints text bars."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    extra = cfg["options.extras_require"]["notebooks"].split()
    assert any(req.startswith("ipywidgets") for req in extra), extra
