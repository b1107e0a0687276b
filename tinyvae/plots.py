"""Figures for autoencoders and VAEs: reconstructions, samples, latent spaces, interpolations, training curves.

Every function builds a ``matplotlib.figure.Figure`` with the object API (no pyplot, no global state), so it works
headless and in scripts; in a notebook a Figure shows as a cell's last expression or by ``display(fig)``, never by
``plt.show()``. Each returns the Figure and, given ``path``, also writes it there as a PNG. Images are rows of a
batch (N, H*W) on any backend, shown as H x W grey digits; a grid of them is one mosaic image (tiles 1 pixel
apart), placed pixel-exactly (each pixel 1 x 1 or 2 x 2 figure pixels: a digit keeps >= 28 x 28 pixels). Strips
wrap into blocks of at most ``WRAP`` images, as even as can be (12 images: 6 + 6, not 10 + 2); more than
``MAX_IMAGES`` images are refused.

    >>> import tinyvae as tv
    >>> from tinyvae import plots
    >>> fig = plots.samples(vae, n=64, rng=0, path="samples.png")
"""
# Host-only: plotting; converts arrays with tinyvae.to_numpy.
from __future__ import annotations

import math
import os
from contextlib import contextmanager
from statistics import NormalDist

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullLocator

from . import backend as B
from .checks import positive_int
from .files import atomic_write
from .pca import PCA

DPI = 100
WRAP = 10             # the most images per strip before it wraps into another block of rows
MAX_IMAGES = 2500     # the most images one figure draws: more would be a mosaic too large to view as digits
_TARGET_PX = 640      # figures whose mosaic is at most half this size are drawn at 2 figure pixels per pixel
_PAD = 8              # margins, in figure pixels
_STRIP_GAP = 3        # between the strips of one block
_CHAR_PX, _TITLE_CHAR_PX = 8, 10   # generous widths of a character of a label (10 pt) and of a title (12 pt)
_LABEL_PX, _TITLE_PX = 16, 18      # heights of a line of label text and of the title
_MANIFOLD_LEFT, _MANIFOLD_BAND = 72, 40  # room for the manifold's z2 and z1 ticks and axis labels
_CMAP = matplotlib.colormaps["gray"].with_extremes(bad="white")  # NaN = the gap between tiles, drawn white
_HISTORY_KEYS = ("train_loss", "train_recon", "train_kl", "val_loss", "val_recon", "val_kl")


# ----------------------------------------------------------------------------------------------------- helpers
def _images(a, image_shape, what="images"):
    """Any batch of images (N, H*W), a single image (H*W,) or (N, H, W), as a float NumPy array (N, H, W)."""
    a = B.to_numpy(a)
    h, w = image_shape
    if a.size % (h * w) or a.ndim == 0 or a.shape[-1] not in (w, h * w):
        raise ValueError(f"{what}: expected rows of {h * w} pixels (image_shape={tuple(image_shape)}), "
                         f"got an array of shape {a.shape}")
    return a.reshape(-1, h, w).astype(np.float32)


def _one_image(a, image_shape, name):
    """A single image as a flat NumPy row (H*W,); a clear error for a batch of several."""
    flat = _images(a, image_shape, name)
    if len(flat) != 1:
        raise ValueError(f"{name}: expected one image, got {len(flat)}")
    return flat.reshape(-1)


def _tile(images, ncols, pad=1):
    """Images (N, H, W) laid out row by row, ncols per row, as one (rows, cols) mosaic with NaN gaps."""
    n, h, w = images.shape
    nrows = max(1, math.ceil(n / ncols))
    mosaic = np.full((nrows * (h + pad) - pad, ncols * (w + pad) - pad), np.nan, dtype=np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, ncols)
        mosaic[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = image
    return mosaic


def _show(ax, mosaic, label=None):
    """Draw a mosaic on ``ax`` (pixels shown on [0, 1], values outside are clipped), no ticks, an optional label."""
    ax.imshow(mosaic, cmap=_CMAP, vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if label:
        ax.set_ylabel(label, rotation=0, ha="right", va="center", labelpad=_PAD)


def _scale(width, height):
    """Figure pixels per mosaic pixel: 2 for a small figure, else 1; always a whole number, since a fraction
    would resample the mosaic (a shrunk one drops the 1-pixel gaps between tiles, a stretched one blurs)."""
    return 2 if 2 * max(width, height) <= _TARGET_PX else 1


def _text_px(text, size=_CHAR_PX):
    """A generous estimate of the width of a line of text in pixels (labels are short and plain)."""
    return len(text or "") * size


def _pixel_figure(blocks, title=None, *, left=None, band=None):
    """A figure of mosaics placed pixel-exactly, so that every image pixel is ``scale`` x ``scale`` figure pixels.

    ``blocks`` is a list of blocks, each a list of (label, mosaic) strips drawn one under the other and sharing a
    left edge; a band of ``band`` pixels (room for tick labels) follows each block. ``left`` is the left margin
    (default: room for the longest label). Returns the figure and the axes, as a list of lists like ``blocks``.
    """
    strips = [m for block in blocks for _, m in block]
    width = max(m.shape[1] for m in strips)
    s = _scale(width, sum(m.shape[0] for m in strips))
    labels = [label for block in blocks for label, _ in block if label]
    left = left if left is not None else _PAD + (max(map(_text_px, labels)) + _PAD if labels else 0)
    band = _PAD if band is None else band
    top = _PAD + (_TITLE_PX + _PAD if title else 0)
    fig_w = max(left + width * s + _PAD, _text_px(title, _TITLE_CHAR_PX) + 2 * _PAD)
    fig_h = top + sum(sum(m.shape[0] * s for _, m in block) + _STRIP_GAP * (len(block) - 1) + band
                      for block in blocks)
    fig = Figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI)
    x0 = left + (fig_w - left - _PAD - width * s) // 2  # centred when a long title widens the figure
    y, axes = top, []
    for block in blocks:
        row = []
        for label, mosaic in block:
            h, w = mosaic.shape[0] * s, mosaic.shape[1] * s
            ax = fig.add_axes((x0 / fig_w, (fig_h - y - h) / fig_h, w / fig_w, h / fig_h))
            _show(ax, mosaic, label)
            row.append(ax)
            y += h + _STRIP_GAP
        axes.append(row)
        y += band - _STRIP_GAP
    if title:
        fig.suptitle(title, y=1.0 - _PAD / fig_h, va="top")
    return fig, axes


def _rows(rows, title, path, *, ncols, ends=None):
    """A figure of labelled strips, one per (label, images) pair, wrapped into blocks of at most ``ncols`` images.

    Block k shows images k*c ... (k+1)*c - 1 of every strip, one strip under the other, so a long strip grows in
    rows rather than into a thin line of tiny digits; c = ``_balanced_columns(n, ncols)``. ``ends`` = (first, last)
    labels the first and the last image (under the bottom strip), e.g. ("A", "B") for the two ends of a walk.
    """
    n = max(len(images) for _, images in rows)
    ncols = _balanced_columns(n, ncols)
    blocks = [[(label, _tile(images[start:start + ncols], ncols)) for label, images in rows]
              for start in range(0, n, ncols)]
    fig, axes = _pixel_figure(blocks, title, band=_PAD + _LABEL_PX if ends else None)
    if ends:
        w = rows[0][1].shape[2]
        marks = {}  # block -> [(x of the image's centre within its block, text)]
        for i, text in ((0, ends[0]), (n - 1, ends[1])):
            marks.setdefault(i // ncols, []).append(((i % ncols) * (w + 1) + (w - 1) / 2, text))
        for k, ticks in marks.items():
            ax = axes[k][-1]
            ax.set_xticks([x for x, _ in ticks], [text for _, text in ticks])
            ax.tick_params(axis="x", length=0, pad=2)
    return _save(fig, path)


def _balanced_columns(n, most):
    """Columns for n images in rows of at most ``most``, the rows as even as can be: the fewest rows that hold
    them, r = ceil(n / most), then ceil(n / r) columns (12 in rows of at most 10: 2 x 6, not 10 + 2)."""
    return math.ceil(n / math.ceil(n / most))


def _save(fig, path):
    """Write ``fig`` as a PNG to ``path`` atomically (a temporary file in the same folder, then os.replace)."""
    if path is None:
        return fig
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot save the figure to {path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot save the figure to {path}: it is a folder; give a file name like "
                                f"{os.path.join(path, 'figure.png')}")
    try:
        with atomic_write(path) as out:
            fig.savefig(out, format="png")
    except PermissionError as err:
        raise PermissionError(err.errno, f"cannot save the figure to {path}: {err.strerror} in {folder}") from None
    return fig


def _head(x, n):
    """The first n examples of a batch on any backend (array-API slicing names every axis: x[:n, ...])."""
    x = x if hasattr(x, "ndim") else B.asarray(x)
    return x if x.ndim == 1 else x[:min(n, x.shape[0]), ...]  # a slice past the end is an error in the array API


@contextmanager
def _eval_mode(model):
    """Run a block with the model in eval mode (no corruption of the input), then restore its previous mode."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _codes(model, x):
    """The latent code of each example: mu for a VAE (``encode`` gives (mu, logvar)), z for an autoencoder."""
    code = model.encode(x)
    return code[0] if isinstance(code, tuple) else code


def _walk(model, x_a, x_b, steps, method):
    """Images decoded along the latent path from x_a to x_b (``model.interpolate``; a straight line otherwise)."""
    if hasattr(model, "interpolate"):
        return model.interpolate(x_a, x_b, steps=steps, method=method)
    if method != "linear":
        raise ValueError(f"{type(model).__name__} has no interpolate(); only method='linear' works, got {method!r}")
    if int(steps) < 2:
        raise ValueError(f"steps must be at least 2, got {steps!r}")
    z_a, z_b = B.to_numpy(_codes(model, x_a)), B.to_numpy(_codes(model, x_b))
    t = np.linspace(0.0, 1.0, int(steps)).reshape(-1, 1)
    return model.decode((1.0 - t) * z_a + t * z_b)


# ------------------------------------------------------------------------------------------------------ images
def _count(n, what):
    """``n`` as an int in [1, MAX_IMAGES]: a figure has room for so many digits, and no more."""
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"{what} must be a positive int, got {n!r}")
    if n > MAX_IMAGES:
        raise ValueError(f"{what}={n} is too many images for one figure: at most {MAX_IMAGES} are drawn (each "
                         "digit keeps at least 28 x 28 pixels); draw a subset, or several figures")
    return int(n)


def image_grid(images, ncols=None, title=None, path=None, *, image_shape=(28, 28)):
    """A grid of images (N, H*W), ``ncols`` per row (default: as square as possible), each pixel >= 1 x 1 px."""
    images = _images(images, image_shape)
    if len(images) == 0:
        raise ValueError("image_grid: got no images (an array of shape (0, ...))")
    n = _count(len(images), "image_grid: the number of images")
    ncols = int(ncols) if ncols else math.ceil(math.sqrt(n))
    positive_int(ncols, "ncols")
    fig, _ = _pixel_figure([[(None, _tile(images, ncols))]], title)
    return _save(fig, path)


def image_rows(rows, title=None, path=None, *, ncols=WRAP, ends=None, image_shape=(28, 28)):
    """Labelled rows of images, e.g. [("original", x), ("PCA", x_pca), ("autoencoder", x_ae)], one under another.

    Each row is a batch (N, H*W); rows longer than ``ncols`` wrap into further blocks of rows of equal length
    (``_balanced_columns``: 12 images are two blocks of 6; block k holds images k*6 ... of every row), so the
    figure grows downwards and every digit keeps its size.
    ``ends`` = (first, last) labels the first and last image of the bottom row, e.g. ("A", "B").
    """
    rows = [(str(label) if label is not None else None, _images(images, image_shape, f"row {label!r}"))
            for label, images in rows]
    if not rows or not all(len(images) for _, images in rows):
        raise ValueError("image_rows: expected a list of (label, images) pairs, each with at least one image")
    _count(max(len(images) for _, images in rows) * len(rows), "image_rows: the number of images")
    return _rows(rows, title, path, ncols=_count(ncols, "image_rows: ncols"), ends=ends)


def reconstructions(model, x, n=10, path=None, *, ncols=WRAP, image_shape=(28, 28)):
    """The first ``n`` images of x over ``model.reconstruct`` of them: pairs of rows, ``ncols`` images wide."""
    n = _count(n, "reconstructions: n")
    x = _head(x, n)
    with _eval_mode(model):
        recon = model.reconstruct(x)
    rows = [("original", x), ("reconstruction", recon)]
    return image_rows(rows, f"{type(model).__name__}: reconstructions", path, ncols=ncols, image_shape=image_shape)


def samples(model, n=64, rng=None, path=None, *, image_shape=(28, 28)):
    """``model.sample(n, rng)``: n images decoded from z ~ N(0, I), the prior of a VAE."""
    if not hasattr(model, "sample"):
        raise TypeError(f"samples needs a generative model with .sample(n, rng) (a VAE); got {type(model).__name__}")
    n = _count(n, "samples: n")
    return image_grid(model.sample(n, rng), title=f"{n} samples from the prior, z ~ N(0, I)", path=path,
                      image_shape=image_shape)


def conditional_samples(model, per_digit=8, rng=None, path=None, *, image_shape=(28, 28)):
    """One row per class of a conditional model, labelled with its digit: ``per_digit`` samples of each.

    Column j decodes the same prior draw z_j ~ N(0, I) in every row (``model.decode(z, digits)``), so down a column
    only the label changes: what stays the same is what z carries (the style: slant, thickness).
    """
    classes = getattr(model, "num_classes", None)
    if not classes:
        raise TypeError(f"conditional_samples needs a conditional model (one with num_classes, e.g. a "
                        f"ConditionalVAE); got {type(model).__name__}")
    per_digit = _count(per_digit, "conditional_samples: per_digit")
    z = B.to_numpy(B.as_generator(rng).standard_normal((per_digit, model.latent_dim), model.dtype))
    codes = B.asarray(np.tile(z, (classes, 1)), dtype=model.dtype)
    digits = B.asarray(np.repeat(np.arange(classes), per_digit))
    with _eval_mode(model):
        images = _images(model.decode(codes, digits), image_shape)
    rows = [(str(d), images[d * per_digit:(d + 1) * per_digit]) for d in range(classes)]
    return image_rows(rows, f"{type(model).__name__}: {per_digit} samples of each digit", path,
                      image_shape=image_shape)


def latent_manifold(model, n=15, path=None, *, image_shape=(28, 28)):
    """The decoder over a 2-D latent plane: an n x n mosaic of decode(z) for z on a grid of Gaussian quantiles.

    z_i = Phi^-1(p_i) with p_i evenly spaced on [0.05, 0.95], so the grid covers the bulk of the N(0, I) prior
    with equal probability mass between neighbouring codes (the figure of Kingma & Welling, 2014).
    """
    latent_dim = getattr(model, "latent_dim", None)
    if latent_dim != 2:
        raise ValueError(f"latent_manifold draws a 2-D latent space; this {type(model).__name__} has "
                         f"latent_dim={latent_dim}. Train one with latent_dim=2, or plot latent_space() instead.")
    positive_int(n, "n", 2)
    _count(n * n, "latent_manifold: n * n")
    q = [NormalDist().inv_cdf(float(p)) for p in np.linspace(0.05, 0.95, n)]
    # Row r of the mosaic holds z2 = q[n-1-r] (largest at the top, as on a plot); column c holds z1 = q[c].
    z = np.array([[z1, z2] for z2 in reversed(q) for z1 in q])
    images = _images(model.decode(z), image_shape)
    title = "Decoded latent grid (N(0, 1) quantiles 5%-95%)"
    fig, [[ax]] = _pixel_figure([[(None, _tile(images, n))]], title, left=_MANIFOLD_LEFT, band=_MANIFOLD_BAND)
    h, w = image_shape
    ends = [0, n // 2, n - 1]  # label a few cells: the edges and the middle of the grid, in z units
    ax.set_xticks([c * (w + 1) + (w - 1) / 2 for c in ends], [f"{round(q[c], 2) + 0.0:g}" for c in ends])
    ax.set_yticks([r * (h + 1) + (h - 1) / 2 for r in ends], [f"{round(q[n - 1 - r], 2) + 0.0:g}" for r in ends])
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    return _save(fig, path)


def interpolation(model, x_a, x_b, steps=10, method="linear", path=None, *, ncols=WRAP, ends=("A", "B"),
                  image_shape=(28, 28)):
    """Images decoded along the latent path from x_a (labelled A) to x_b (B) (``model.interpolate``), wrapped
    into blocks of at most ``ncols`` images."""
    a, b = _one_image(x_a, image_shape, "x_a"), _one_image(x_b, image_shape, "x_b")
    steps = _count(steps, "interpolation: steps")
    with _eval_mode(model):
        images = _walk(model, a, b, steps, method)
    return image_rows([(None, images)], f"Latent interpolation ({method}, {steps} steps)", path, ncols=ncols,
                      ends=ends, image_shape=image_shape)


def blend_comparison(model, x_a, x_b, steps=10, path=None, *, ncols=WRAP, ends=("A", "B"), image_shape=(28, 28)):
    """Two strips from x_a to x_b: decoding a straight walk between their codes, and blending their pixels.

    Pixel blending (1 - t) x_a + t x_b fades one digit out as the other fades in (a double exposure); the latent
    walk should instead pass through plausible digits, if the model learned a smooth latent space.
    """
    a, b = _one_image(x_a, image_shape, "x_a"), _one_image(x_b, image_shape, "x_b")
    steps = _count(steps, "blend_comparison: steps")
    with _eval_mode(model):
        walk = _walk(model, a, b, steps, "linear")
    t = np.linspace(0.0, 1.0, steps).reshape(-1, 1)
    return image_rows([("latent walk", walk), ("pixel blend", (1.0 - t) * a + t * b)],
                      "Walking the latent space vs blending pixels", path, ncols=ncols, ends=ends,
                      image_shape=image_shape)


def denoising(model, x, rng=None, n=8, path=None, *, ncols=WRAP, image_shape=(28, 28)):
    """Three rows: clean images, ``model.corrupt`` of them, and the model's reconstruction of the corrupted ones."""
    if not hasattr(model, "corrupt"):
        raise TypeError(f"denoising needs a DenoisingAutoencoder (a model with .corrupt); got {type(model).__name__}")
    x = _head(x, _count(n, "denoising: n"))
    corrupted = model.corrupt(x, rng)
    with _eval_mode(model):  # eval mode: the model must not corrupt its (already corrupted) input again
        denoised = model.reconstruct(corrupted)
    noise = f"{getattr(model, 'noise', '?')} noise, level {getattr(model, 'noise_level', float('nan')):g}"
    return image_rows([("clean", x), ("corrupted", corrupted), ("denoised", denoised)], f"Denoising ({noise})",
                      path, ncols=ncols, image_shape=image_shape)


# ------------------------------------------------------------------------------------------------ latent codes
def latent_space(model, x, labels, path=None):
    """A scatter of each example's code (mu for a VAE, z for an autoencoder), coloured by its label.

    A latent space of more than two dimensions is projected onto its first two principal components
    (``tinyvae.PCA``: center the codes, M = U S V^T, plot M V[:, :2]); the axis labels give the share of the
    variance each component explains, s_k^2 / sum_j s_j^2.
    """
    code = model.encode(x)
    name, codes = ("mu", code[0]) if isinstance(code, tuple) else ("z", code)  # VAE: (mu, logvar); AE: z
    labels = B.to_numpy(labels).reshape(-1)
    if len(labels) != codes.shape[0]:
        raise ValueError(f"latent_space: got {codes.shape[0]} examples but {len(labels)} labels")
    dim = codes.shape[1]
    if dim > 2:
        points, share = _pca2(codes)
        axis_labels = [f"PC{k + 1} of {name} ({100 * s:.0f}% of variance)" for k, s in enumerate(share)]
        title = f"Latent space ({dim}-D, PCA projection)"
    else:
        points = B.to_numpy(codes).astype(np.float64)
        if dim == 1:  # one latent dimension: spread the points out by label so that they do not overlap
            points = np.column_stack([points[:, 0], labels])
        axis_labels = [f"{name}1", f"{name}2" if dim == 2 else "label"]
        title = f"Latent space ({dim}-D)"
    fig = Figure(figsize=(5.5, 4.5), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    classes = np.unique(labels)
    colours = (matplotlib.colormaps["tab10"].colors if len(classes) <= 10
               else matplotlib.colormaps["viridis"](np.linspace(0.0, 1.0, len(classes))))
    for label, colour in zip(classes, colours):
        mine = labels == label
        ax.scatter(points[mine, 0], points[mine, 1], s=5, alpha=0.7, color=colour, label=str(label), linewidths=0)
    ax.legend(title="label", loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small", markerscale=3,
              frameon=False)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title)
    return _save(fig, path)


def _pca2(codes):
    """The codes (N, K) on their first two principal components (NumPy, (N, 2)) and each one's share of variance.

    The SVD runs on the active backend (the GPU under CuPy); only the (N, 2) projection comes back to the host.
    """
    pca = PCA(2).fit(codes)
    return B.to_numpy(pca.transform(codes)).astype(np.float64), B.to_numpy(pca.explained_variance_ratio_)


# ---------------------------------------------------------------------------------------------------- numbers
def training_curves(history, path=None, *, units="nats per example"):
    """Loss, reconstruction and KL against epoch, for training and, when present, validation.

    ``history`` is a dict of lists with keys train_loss, train_recon, train_kl, val_loss, val_recon, val_kl (any
    may be missing or empty) and optionally "epochs" (the x values, e.g. 6, 7, 8 for a resumed run; else 1, 2, ...),
    or an object with ``to_dict()`` giving one (``tinyvae.train.History``). ``units`` labels the y axis: the
    default suits a Bernoulli likelihood; ``tinyvae.models.loss_units(model)`` gives the right one for any model.
    The KL panel is left out when every KL is zero (an autoencoder has no KL term).
    """
    if hasattr(history, "to_dict"):
        history = history.to_dict()
    if not hasattr(history, "get"):
        raise TypeError(f"training_curves expects a dict of lists (keys {', '.join(_HISTORY_KEYS)}) or an object "
                        f"with to_dict(); got {type(history).__name__}")
    if not any(history.get(k) for k in _HISTORY_KEYS):
        raise ValueError(f"training_curves: the history holds none of {', '.join(_HISTORY_KEYS)} (got keys "
                         f"{sorted(history)})")
    parts = [("loss", "total loss"), ("recon", "reconstruction"), ("kl", "KL")]
    kl = [float(v) for split in ("train", "val") for v in (history.get(f"{split}_kl") or [])]
    if kl and not any(kl):
        parts = parts[:2]
    fig = Figure(figsize=(8.0 * len(parts) / 3, 2.8), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(parts))
    epochs = list(history.get("epochs") or [])  # History counts on from where a resumed run started
    for ax, (part, name) in zip(axes, parts):
        for split, style in [("train", "-"), ("val", "--")]:
            values = [float(v) for v in (history.get(f"{split}_{part}") or [])]
            if values:
                x = epochs if len(epochs) == len(values) else range(1, len(values) + 1)
                ax.plot(x, values, style, marker="." if len(values) < 30 else None,
                        label="validation" if split == "val" else "train")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(units)
    axes[0].legend(fontsize="small")
    return _save(fig, path)


def ae_vs_pca(latents, ae_errors, pca_errors, path=None):
    """Reconstruction error against latent size for an autoencoder and for PCA with as many components.

    PCA is the best *linear* code of each size (Eckart-Young), so the gap is what the nonlinear encoder buys.
    """
    latents = [int(k) for k in latents]
    ae_errors, pca_errors = [float(e) for e in ae_errors], [float(e) for e in pca_errors]
    if not latents or not len(latents) == len(ae_errors) == len(pca_errors):
        raise ValueError(f"ae_vs_pca needs one error per latent size and model: got {len(latents)} latent sizes, "
                         f"{len(ae_errors)} autoencoder errors and {len(pca_errors)} PCA errors")
    fig = Figure(figsize=(5.0, 3.5), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(latents, ae_errors, "o-", label="autoencoder")
    ax.plot(latents, pca_errors, "s--", label="PCA")
    if min(latents) > 0 and max(latents) >= 4 * min(latents):  # latent sizes usually double: 2, 4, 8, ...
        ax.set_xscale("log", base=2)
    ax.set_xticks(latents, [str(k) for k in latents])
    errors = ae_errors + pca_errors
    if min(errors) > 0 and max(errors) >= 10 * min(errors):
        ax.set_yscale("log")
    ax.set_xlabel("latent size (components)")
    ax.set_ylabel("reconstruction error per example")
    ax.set_title("Autoencoder vs PCA")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def beta_tradeoff(results, path=None):
    """Reconstruction and KL (nats per example) against beta, for a list of {"beta", "recon", "kl"} dicts; every
    beta tried is a tick on the x axis.

    Raising beta buys a smaller KL (a code closer to the prior) with a worse reconstruction.
    """
    rows = []
    for i, r in enumerate(results):
        missing = [k for k in ("beta", "recon", "kl") if k not in r]
        if missing:
            raise ValueError(f"beta_tradeoff: result {i} lacks {', '.join(missing)}; each result is a dict with "
                             "keys 'beta', 'recon' and 'kl'")
        rows.append((float(r["beta"]), float(r["recon"]), float(r["kl"])))
    if not rows:
        raise ValueError("beta_tradeoff: got no results")
    beta, recon, kl = zip(*sorted(rows))
    fig = Figure(figsize=(6.5, 3.0), dpi=DPI, layout="constrained")
    for ax, values, name, colour in zip(fig.subplots(1, 2), (recon, kl), ("reconstruction", "KL"), ("C0", "C1")):
        ax.plot(beta, values, "o-", color=colour)
        positive = [b for b in beta if b > 0]
        if positive and max(positive) >= 10 * min(positive):  # betas span decades; symlog also shows beta = 0
            if len(positive) == len(beta):
                ax.set_xscale("log")
            else:
                ax.set_xscale("symlog", linthresh=min(positive))
        ax.set_xticks(beta, [f"{b:g}" for b in beta])  # a tick at every beta tried, and only there
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_title(f"{name} vs beta")
        ax.set_xlabel("beta")
        ax.set_ylabel("nats per example")
        ax.grid(alpha=0.3)
    return _save(fig, path)
