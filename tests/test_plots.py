"""Tests for tinyvae.plots: each figure shows what it claims (the pixels in the mosaics, the points in the scatter,
the numbers on the curves), accepts arrays of the active backend, and is written as a PNG atomically."""
import struct
from statistics import NormalDist

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure

import tinyvae as tv
from tinyvae import datasets, plots

matplotlib.use("Agg")  # headless; plots never touches pyplot, so this only guards against a stray display

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CELL = 29  # a 28-pixel tile plus the 1-pixel gap


@pytest.fixture(scope="module")
def mnist():
    data = datasets.load("mnist-small")
    return data.x_test[:40], data.y_test[:40]


@pytest.fixture
def x(mnist):
    """Images on the active backend (strict arrays under the strict backend)."""
    return tv.asarray(mnist[0])


@pytest.fixture
def labels(mnist):
    return tv.asarray(mnist[1])


def host(a):
    return tv.to_numpy(a).astype(np.float32)


def mosaics(fig):
    """The pixel array of every image drawn in the figure, axes by axes."""
    return [np.asarray(im.get_array(), dtype=np.float32) for ax in fig.axes for im in ax.images]


def tile(mosaic, i, ncols):
    r, c = divmod(i, ncols)
    return mosaic[r * CELL:r * CELL + 28, c * CELL:c * CELL + 28].reshape(-1)


def assert_tiles(mosaic, images, ncols):
    """The mosaic holds exactly these images, in order, ncols per row."""
    images = host(images).reshape(-1, 28 * 28)
    for i, image in enumerate(images):
        np.testing.assert_allclose(tile(mosaic, i, ncols), image, rtol=1e-6, atol=1e-7)


def test_image_grid_lays_out_the_images_in_rows(mnist):
    images = mnist[0][:25]
    fig = plots.image_grid(tv.asarray(images), ncols=10, title="digits")
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    (mosaic,) = mosaics(fig)
    assert mosaic.shape == (3 * CELL - 1, 10 * CELL - 1)
    assert_tiles(mosaic, images, 10)
    assert np.isnan(mosaic[28, :]).all() and np.isnan(mosaic[:, 28]).all()   # the gaps
    assert np.isnan(tile(mosaic, 25, 10)).all()                              # the unfilled end of the last row
    assert fig.get_suptitle() == "digits"
    assert mosaics(plots.image_grid(images[:9]))[0].shape == (3 * CELL - 1, 3 * CELL - 1)  # square by default


def test_image_grid_rejects_images_of_the_wrong_size():
    with pytest.raises(ValueError, match=r"784 pixels.*\(4, 100\)"):
        plots.image_grid(tv.backend.zeros((4, 100)))
    (mosaic,) = mosaics(plots.image_grid(tv.backend.zeros((4, 100)), image_shape=(10, 10)))
    assert mosaic.shape == (2 * 11 - 1, 2 * 11 - 1)


def test_reconstructions_show_originals_over_reconstructions(x):
    model = tv.DenoisingAutoencoder(784, (32,), 4, rng=0)
    fig = plots.reconstructions(model, x, n=5)
    top, bottom = mosaics(fig)
    assert len(fig.axes) == 2 and top.shape == bottom.shape == (28, 5 * CELL - 1)
    assert_tiles(top, x[:5, :], 5)
    assert_tiles(bottom, model.reconstruct(x[:5, :]), 5)
    assert model.training  # the mode the model was in is restored


def test_samples_are_the_models_samples_for_the_same_seed():
    model = tv.VAE(784, (32,), 2, rng=0)
    fig = plots.samples(model, n=9, rng=3)
    (mosaic,) = mosaics(fig)
    assert mosaic.shape == (3 * CELL - 1, 3 * CELL - 1)
    assert_tiles(mosaic, model.sample(9, tv.Generator(3)), 3)
    with pytest.raises(TypeError, match="sample"):
        plots.samples(tv.Autoencoder(784, (32,), 2, rng=0))


def test_latent_space_2d_plots_mu_by_label(x, labels):
    model = tv.VAE(784, (32,), 2, rng=0)
    fig = plots.latent_space(model, x, labels)
    (ax,) = fig.axes
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    mu = host(model.encode(x)[0])
    # Each class is one scatter: compare as sets of rows, sorted the same way.
    np.testing.assert_allclose(np.sort(points, axis=0), np.sort(mu, axis=0), rtol=1e-5, atol=1e-6)
    assert len(ax.get_legend().get_texts()) == len(np.unique(host(labels)))
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("mu1", "mu2")
    with pytest.raises(ValueError, match="40 examples but 39 labels"):
        plots.latent_space(model, x, labels[:39])


@pytest.mark.parametrize("kind", ["vae", "ae"])
def test_latent_space_projects_more_than_two_dimensions_with_pca(x, labels, kind):
    model = tv.VAE(784, (32,), 5, rng=0) if kind == "vae" else tv.Autoencoder(784, (32,), 3, rng=0)
    fig = plots.latent_space(model, x, labels)
    (ax,) = fig.axes
    name = "mu" if kind == "vae" else "z"
    assert ax.get_xlabel().startswith(f"PC1 of {name}") and "PCA" in ax.get_title()
    codes = host(model.encode(x)[0] if kind == "vae" else model.encode(x)).astype(np.float64)
    centered = codes - codes.mean(axis=0)
    expected = centered @ np.linalg.svd(centered, full_matrices=False)[2][:2].T
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    # Principal directions are defined up to sign: compare magnitudes, row sets sorted alike.
    np.testing.assert_allclose(np.sort(np.abs(points), axis=0), np.sort(np.abs(expected), axis=0),
                               rtol=1e-3, atol=1e-4)


def test_latent_manifold_decodes_a_grid_of_gaussian_quantiles():
    model = tv.VAE(784, (32,), 2, rng=0)
    fig = plots.latent_manifold(model, n=5)
    (mosaic,) = mosaics(fig)
    assert mosaic.shape == (5 * CELL - 1, 5 * CELL - 1)
    lo, hi = NormalDist().inv_cdf(0.05), NormalDist().inv_cdf(0.95)
    # Top left: smallest z1, largest z2 (z2 grows upwards, as on a plot); bottom right: the opposite corner.
    corners = model.decode(tv.asarray(np.array([[lo, hi], [hi, lo]], dtype=np.float32)))
    np.testing.assert_allclose(tile(mosaic, 0, 5), host(corners)[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tile(mosaic, 24, 5), host(corners)[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [lambda: tv.VAE(784, (8,), 3, rng=0), lambda: tv.Autoencoder(784, (8,), 1, rng=0)],
                         ids=["vae-3d", "ae-1d"])
def test_latent_manifold_rejects_a_latent_space_that_is_not_2d(make):
    model = make()
    with pytest.raises(ValueError, match=f"latent_dim={model.latent_dim}"):
        plots.latent_manifold(model)


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolation_shows_the_models_interpolation(x, method):
    model = tv.VAE(784, (32,), 2, rng=0)
    fig = plots.interpolation(model, x[0, :], x[1, :], steps=6, method=method)
    (mosaic,) = mosaics(fig)
    assert mosaic.shape == (28, 6 * CELL - 1)
    assert_tiles(mosaic, model.interpolate(x[0, :], x[1, :], steps=6, method=method), 6)
    with pytest.raises(ValueError, match="x_a: expected one image, got 2"):
        plots.interpolation(model, x[:2, :], x[2, :])


@pytest.mark.parametrize("kind", ["vae", "ae"])
def test_blend_comparison_walks_the_codes_and_blends_the_pixels(x, kind):
    model = tv.VAE(784, (32,), 2, rng=0) if kind == "vae" else tv.Autoencoder(784, (32,), 2, rng=0)
    fig = plots.blend_comparison(model, x[0, :], x[1, :], steps=5)
    walk, blend = mosaics(fig)
    assert len(fig.axes) == 2
    a, b = host(x[0, :]), host(x[1, :])
    assert_tiles(blend, np.stack([(1 - t) * a + t * b for t in np.linspace(0, 1, 5)]), 5)
    # The walk starts and ends at the reconstructions of the two end points.
    assert_tiles(walk[:, :28], model.reconstruct(x[0, :]), 1)
    np.testing.assert_allclose(tile(walk, 4, 5), host(model.reconstruct(x[1, :]))[0], rtol=1e-5, atol=1e-6)


def test_denoising_shows_clean_corrupted_and_denoised(x):
    model = tv.DenoisingAutoencoder(784, (32,), 4, noise="gaussian", noise_level=0.3, rng=0)
    fig = plots.denoising(model, x, rng=7, n=4)
    clean, corrupted, denoised = mosaics(fig)
    assert len(fig.axes) == 3
    expected = model.corrupt(x[:4, :], tv.Generator(7))
    assert_tiles(clean, x[:4, :], 4)
    assert_tiles(corrupted, expected, 4)
    assert_tiles(denoised, model.reconstruct(expected), 4)
    assert model.training  # back in training mode afterwards
    with pytest.raises(TypeError, match="DenoisingAutoencoder"):
        plots.denoising(tv.Autoencoder(784, (32,), 4, rng=0), x)


class _History:
    def __init__(self, d):
        self.d = d

    def to_dict(self):
        return self.d


@pytest.mark.backends("numpy")
def test_training_curves_plot_train_and_validation():
    full = {"train_loss": [3.0, 2.0, 1.5], "train_recon": [2.5, 1.8, 1.2], "train_kl": [0.5, 0.2, 0.3],
            "val_loss": [3.2, 2.4, 2.0], "val_recon": [2.6, 2.0, 1.6], "val_kl": [0.6, 0.4, 0.4]}
    for history in (full, _History(full)):
        fig = plots.training_curves(history)
        assert [ax.get_title() for ax in fig.axes] == ["total loss", "reconstruction", "KL"]
        for ax, part in zip(fig.axes, ["loss", "recon", "kl"]):
            train, val = ax.get_lines()
            assert list(train.get_xdata()) == [1, 2, 3]
            assert list(train.get_ydata()) == full[f"train_{part}"] and list(val.get_ydata()) == full[f"val_{part}"]
    resumed = {k: v for k, v in full.items() if k.startswith("train")} | {"val_loss": [], "epochs": [4, 5, 6]}
    for ax in plots.training_curves(resumed).axes:
        (line,) = ax.get_lines()
        assert list(line.get_xdata()) == [4, 5, 6]
    with pytest.raises(ValueError, match="none of train_loss"):
        plots.training_curves({"val_loss": []})
    with pytest.raises(TypeError, match="dict of lists"):
        plots.training_curves([1.0, 2.0])


@pytest.mark.backends("numpy")
def test_ae_vs_pca_plots_both_errors_against_latent_size():
    fig = plots.ae_vs_pca([2, 8, 32], [40.0, 20.0, 9.0], [50.0, 30.0, 10.0])
    (ax,) = fig.axes
    ae, pca = ax.get_lines()
    assert list(ae.get_xdata()) == [2, 8, 32] and list(ae.get_ydata()) == [40.0, 20.0, 9.0]
    assert list(pca.get_ydata()) == [50.0, 30.0, 10.0]
    assert ax.get_xscale() == "log"
    with pytest.raises(ValueError, match="3 latent sizes, 2 autoencoder errors"):
        plots.ae_vs_pca([2, 8, 32], [1.0, 2.0], [1.0, 2.0, 3.0])


@pytest.mark.backends("numpy")
def test_beta_tradeoff_plots_recon_and_kl_sorted_by_beta():
    results = [{"beta": 4.0, "recon": 130.0, "kl": 5.0}, {"beta": 0.0, "recon": 90.0, "kl": 30.0},
               {"beta": 1.0, "recon": 100.0, "kl": 20.0}]
    recon_ax, kl_ax = plots.beta_tradeoff(results).axes
    (recon,), (kl,) = recon_ax.get_lines(), kl_ax.get_lines()
    assert list(recon.get_xdata()) == [0.0, 1.0, 4.0] and list(recon.get_ydata()) == [90.0, 100.0, 130.0]
    assert list(kl.get_ydata()) == [30.0, 20.0, 5.0]
    for ax in (recon_ax, kl_ax):  # a tick at every beta tried (4 included), on a log scale too
        assert list(ax.get_xticks()) == [0.0, 1.0, 4.0]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "4"]
    log_ax, _ = plots.beta_tradeoff([{"beta": b, "recon": 1.0, "kl": 1.0} for b in (0.1, 1.0, 4.0)]).axes
    assert log_ax.get_xscale() == "log" and list(log_ax.get_xticks()) == [0.1, 1.0, 4.0]
    assert list(log_ax.get_xticks(minor=True)) == []
    with pytest.raises(ValueError, match="result 1 lacks kl"):
        plots.beta_tradeoff([{"beta": 1.0, "recon": 1.0, "kl": 1.0}, {"beta": 2.0, "recon": 1.0}])


FIGURES = {
    "image_grid": lambda x, y, path: plots.image_grid(x[:6, :], path=path),
    "reconstructions": lambda x, y, path: plots.reconstructions(tv.Autoencoder(784, (16,), 2, rng=0), x, path=path),
    "samples": lambda x, y, path: plots.samples(tv.VAE(784, (16,), 2, rng=0), n=4, rng=0, path=path),
    "latent_space": lambda x, y, path: plots.latent_space(tv.VAE(784, (16,), 3, rng=0), x, y, path=path),
    "latent_manifold": lambda x, y, path: plots.latent_manifold(tv.VAE(784, (16,), 2, rng=0), n=3, path=path),
    "interpolation": lambda x, y, path: plots.interpolation(tv.VAE(784, (16,), 2, rng=0), x[0, :], x[1, :], path=path),
    "blend_comparison": lambda x, y, path: plots.blend_comparison(tv.VAE(784, (16,), 2, rng=0), x[0, :], x[1, :],
                                                                  path=path),
    "training_curves": lambda x, y, path: plots.training_curves({"train_loss": [2.0, 1.0]}, path=path),
    "ae_vs_pca": lambda x, y, path: plots.ae_vs_pca([2, 4], [2.0, 1.0], [3.0, 2.0], path=path),
    "denoising": lambda x, y, path: plots.denoising(tv.DenoisingAutoencoder(784, (16,), 2, rng=0), x, path=path),
    "beta_tradeoff": lambda x, y, path: plots.beta_tradeoff([{"beta": 1.0, "recon": 2.0, "kl": 1.0}], path=path),
}


@pytest.mark.backends("numpy")  # writing the file is backend-independent; every figure's content is tested above
@pytest.mark.parametrize("name", sorted(FIGURES))
def test_every_figure_is_saved_as_a_png_atomically(name, x, labels, tmp_path):
    path = tmp_path / f"{name}.png"
    path.write_bytes(b"an older file, to be replaced")
    fig = FIGURES[name](x, labels, str(path))
    assert isinstance(fig, Figure)
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == tuple(round(v * fig.dpi) for v in fig.get_size_inches())
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


@pytest.mark.backends("numpy")
def test_saving_into_a_missing_folder_or_onto_a_folder_is_a_clear_error(x, tmp_path):
    with pytest.raises(FileNotFoundError, match="the folder .*nowhere does not exist"):
        plots.image_grid(x[:4, :], path=tmp_path / "nowhere" / "grid.png")
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        plots.image_grid(x[:4, :], path=tmp_path)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- figures that scale with n
def _png_size(path):
    data = path.read_bytes()
    return struct.unpack(">II", data[16:24])


def _rendered(fig):
    """The figure drawn as it would be saved: an (H, W) array of its red channel, and the renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, 0], canvas.get_renderer()


def _pixels_per_pixel(ax):
    """Figure pixels per mosaic pixel of the image on ``ax``, across and down."""
    (image,) = ax.images
    rows, cols = image.get_array().shape
    box = ax.get_window_extent()
    return round(box.width / cols, 9), round(box.height / rows, 9)


GREY = np.full((400, 784), 0.5, dtype=np.float32)  # grey tiles: the white gaps between them stand out


@pytest.mark.backends("numpy")
@pytest.mark.parametrize("n", [5, 15, 20])
def test_every_gap_between_tiles_survives_rendering(n):
    """The mosaic is drawn at a whole number of figure pixels per pixel, so no 1-pixel gap is lost (a 15 x 15
    grid squeezed into fewer pixels than its mosaic has used to drop one of its grid lines)."""
    model = tv.VAE(784, (8,), 2, rng=0)
    model.decode = lambda z: GREY[:len(z)]  # grey digits: only the gaps are white
    fig = plots.latent_manifold(model, n=n)
    red, _ = _rendered(fig)
    box = fig.axes[0].get_window_extent()
    top = red.shape[0] - round(box.y1)
    crop = red[top:top + round(box.height), round(box.x0):round(box.x0) + round(box.width)]
    scale = _pixels_per_pixel(fig.axes[0])[0]
    assert scale == int(scale) >= 1
    scale = int(scale)
    white_columns = np.flatnonzero((crop == 255).all(axis=0))
    white_rows = np.flatnonzero((crop == 255).all(axis=1))
    assert len(white_columns) == len(white_rows) == (n - 1) * scale  # every gap, each `scale` pixels wide


@pytest.mark.backends("numpy")
def test_reconstructions_wrap_into_rows_and_keep_the_digits_size(x, tmp_path):
    """n = 5, 30, 100 (the CLI's cap): the PNG grows in rows, never into a thin strip; a digit keeps >= 28 px."""
    model = tv.Autoencoder(784, (8,), 2, rng=0)
    xs = tv.asarray(np.tile(host(x), (3, 1)))  # 120 images
    sizes = {}
    for n in (5, 30, 100):
        fig = plots.reconstructions(model, xs, n=n, path=tmp_path / f"r{n}.png")
        sizes[n] = _png_size(tmp_path / f"r{n}.png")
        blocks = -(-n // plots.WRAP)
        assert len(fig.axes) == 2 * blocks  # an original and a reconstruction strip per block of 10
        for ax in fig.axes:
            across, down = _pixels_per_pixel(ax)
            assert across == down == int(across) >= 1  # whole pixels: a 28 x 28 digit is at least 28 x 28 px
            assert ax.images[0].get_array().shape[1] == min(n, plots.WRAP) * CELL - 1
    (w5, h5), (w30, h30), (w100, h100) = sizes[5], sizes[30], sizes[100]
    assert max(w5, w30, w100) <= 800 and w100 / h100 < 1  # no 800 x 30 strip: 100 images make a tall figure
    assert h5 < h30 < h100 and h100 >= 10 * 2 * 28
    top = mosaics(plots.reconstructions(model, xs, n=30))
    assert_tiles(top[2], xs[10:20, :], 10)  # block 2's originals are images 10..19


@pytest.mark.backends("numpy")
@pytest.mark.parametrize("steps", [2, 10, 11, 50, 1000])
def test_interpolation_wraps_and_labels_its_ends(x, steps):
    model = tv.VAE(784, (8,), 2, rng=0)
    fig = plots.interpolation(model, x[0, :], x[1, :], steps=steps)
    blocks = -(-steps // plots.WRAP)
    assert len(fig.axes) == blocks
    first, last = fig.axes[0], fig.axes[-1]
    labels = [t.get_text() for ax in fig.axes for t in ax.get_xticklabels()]
    assert labels == ["A", "B"]
    assert first.get_xticklabels()[0].get_text() == "A" and last.get_xticklabels()[-1].get_text() == "B"
    # B sits under the last image: its column within the last block (blocks are as even as can be: 11 = 6 + 5)
    col = (steps - 1) % -(-steps // blocks)
    assert last.get_xticks()[-1] == pytest.approx(col * CELL + 13.5)
    width, height = fig.get_size_inches() * fig.dpi
    assert width <= 800 and (steps <= 50 or height > 5 * width)  # 1000 steps: 100 rows, not a 30 px strip


def _overlap(a, b):
    return a.x0 < b.x1 - 0.5 and b.x0 < a.x1 - 0.5 and a.y0 < b.y1 - 0.5 and b.y0 < a.y1 - 0.5


@pytest.mark.backends("numpy")
@pytest.mark.parametrize("figure", ["reconstructions", "denoising", "blend_comparison", "image_rows"])
@pytest.mark.parametrize("n", [1, 10, 11, 50, 100])
def test_labels_stay_inside_the_figure_and_never_overlap(figure, n, x):
    """Every piece of text (title, row labels, end labels) lies inside the figure and clear of the others and of
    the images, at any n the CLI allows."""
    xs = tv.asarray(np.tile(host(x), (3, 1)))
    make = {
        "reconstructions": lambda: plots.reconstructions(tv.Autoencoder(784, (8,), 2, rng=0), xs, n=n),
        "denoising": lambda: plots.denoising(tv.DenoisingAutoencoder(784, (8,), 2, rng=0), xs, n=n),
        "blend_comparison": lambda: plots.blend_comparison(tv.VAE(784, (8,), 2, rng=0), x[0, :], x[1, :],
                                                           steps=max(n, 2)),
        "image_rows": lambda: plots.image_rows([("original", xs[:n, :]), ("a much longer label", xs[:n, :])],
                                               title="a title"),
    }
    fig = make[figure]()
    _, renderer = _rendered(fig)
    width, height = fig.get_size_inches() * fig.dpi
    texts = [t for t in [fig._suptitle] if t is not None and t.get_text()]
    for ax in fig.axes:
        texts += [ax.yaxis.label] if ax.get_ylabel() else []
        texts += [t for t in ax.get_xticklabels() if t.get_text()]
    boxes = [t.get_window_extent(renderer) for t in texts]
    assert len(boxes) >= 2
    for box in boxes:
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height
        assert not any(_overlap(box, ax.get_window_extent()) for ax in fig.axes)
    for i, a in enumerate(boxes):
        assert not any(_overlap(a, b) for b in boxes[i + 1:])


@pytest.mark.parametrize("n, widths", [(10, [10]), (11, [6, 5]), (12, [6, 6]), (21, [7, 7, 7]), (31, [8, 8, 8, 7])])
def test_long_rows_wrap_into_blocks_as_even_as_can_be(mnist, n, widths):
    """12 images wrap as 6 + 6, not 10 + 2: the fewest blocks of at most WRAP images, their widths within one."""
    images = mnist[0][:n]
    fig = plots.image_rows([("a", images), ("b", images[::-1])], title="rows")
    strips = mosaics(fig)  # block by block: the "a" strip, then the "b" strip
    cols = widths[0]
    assert len(strips) == 2 * len(widths) and all(m.shape == (28, cols * CELL - 1) for m in strips)
    filled = [sum(not np.isnan(tile(m, i, cols)).all() for i in range(cols)) for m in strips[::2]]
    assert filled == widths
    start = 0
    for k, width in enumerate(widths):  # block k holds images start ... start + width - 1 of each strip, in order
        assert_tiles(strips[2 * k], images[start:start + width], cols)
        assert_tiles(strips[2 * k + 1], images[::-1][start:start + width], cols)
        start += width


@pytest.mark.backends("numpy")
def test_image_rows_label_each_row(mnist):
    images = mnist[0][:12]
    fig = plots.image_rows([("original", images), ("PCA", images[::-1]), ("autoencoder", images)], ncols=6)
    assert [ax.get_ylabel() for ax in fig.axes] == ["original", "PCA", "autoencoder"] * 2
    assert_tiles(mosaics(fig)[4], images[::-1][6:], 6)
    with pytest.raises(ValueError, match="at least one image"):
        plots.image_rows([("empty", images[:0])])


@pytest.mark.backends("numpy")
def test_samples_are_a_square_grid_and_too_many_are_refused():
    model = tv.VAE(784, (8,), 2, rng=0)
    fig = plots.samples(model, n=400, rng=0)
    assert mosaics(fig)[0].shape == (20 * CELL - 1, 20 * CELL - 1)
    assert _pixels_per_pixel(fig.axes[0])[0] >= 1
    with pytest.raises(ValueError, match=r"samples: n=100000 is too many images.*at most 2500"):
        plots.samples(model, n=100000)
    with pytest.raises(ValueError, match="interpolation: steps=3000 is too many"):
        plots.interpolation(model, GREY[0], GREY[1], steps=3000)


@pytest.mark.backends("numpy")
def test_training_curves_name_the_units_and_leave_out_a_kl_that_is_always_zero():
    ae = {"train_loss": [30.0, 20.0], "train_recon": [30.0, 20.0], "train_kl": [0.0, 0.0], "val_kl": [0.0, 0.0]}
    model = tv.Autoencoder(784, (8,), 2, likelihood="gaussian", rng=0)
    fig = plots.training_curves(ae, units=tv.models.loss_units(model))
    assert [ax.get_title() for ax in fig.axes] == ["total loss", "reconstruction"]
    assert fig.axes[0].get_ylabel() == "squared error per example"
    assert tv.models.loss_units(tv.VAE(784, (8,), 2, rng=0)) == "nats per example"
    assert tv.models.loss_units(tv.VAE(784, (8,), 2, likelihood="gaussian", rng=0)) == \
        "squared error + KL per example"
