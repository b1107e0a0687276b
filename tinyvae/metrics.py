"""Sample-quality figures: a Frechet distance, conditional accuracy, sharpness and the digit shares of samples.

The Frechet distance is the FID recipe with an MNIST classifier (``tinyvae.classifier``, its 128 penultimate
features) in place of Inception: it is NOT comparable to published FIDs. Lower is closer to the real images.
"""
from . import backend as B
from . import classifier as C
from .checks import check_batch, check_labels


def _mean_cov(f):
    """Mean (D,) and unbiased covariance (D, D) of the rows of f (N, D)."""
    xp = B.get_xp()
    mu = xp.mean(f, axis=0)
    centred = f - mu
    return mu, centred.T @ centred / (f.shape[0] - 1)


def _sqrt_psd(s):
    """The symmetric square root of a symmetric PSD matrix, by eigh (eigenvalues rounded below 0 clipped)."""
    xp = B.get_xp()
    w, v = xp.linalg.eigh(s)
    return (v * xp.sqrt(xp.clip(w, 0.0, None))) @ v.T


def frechet_distance_gaussians(mu1, s1, mu2, s2):
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) between N(mu1, S1) and N(mu2, S2).

    tr (S1 S2)^(1/2) = sum sqrt(eig(R S2 R)) with R = S1^(1/2): R S2 R is symmetric PSD and has the eigenvalues of
    S1 S2, so eigh suffices (no general matrix square root).
    """
    xp = B.get_xp()
    r = _sqrt_psd(s1)
    cross = xp.sum(xp.sqrt(xp.clip(xp.linalg.eigvalsh(r @ s2 @ r), 0.0, None)))
    diff = mu1 - mu2
    return float(xp.sum(diff * diff) + _trace(s1) + _trace(s2) - 2.0 * cross)


def _trace(s):
    """Sum of the diagonal (NumPy/CuPy have xp.trace; the array API standard spells it xp.linalg.trace)."""
    xp = B.get_xp()
    return xp.linalg.trace(s) if hasattr(xp.linalg, "trace") else xp.trace(s)


def frechet_distance(feats_a, feats_b):
    """Frechet distance between Gaussians fitted to two sets of feature rows (N_a, D) and (N_b, D), in float64."""
    a, b = B.astype(B.asarray(feats_a), "float64"), B.astype(B.asarray(feats_b), "float64")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(a.shape[0], b.shape[0]) < 2:
        raise ValueError(f"frechet_distance: expected two (N, D) feature sets with the same D and N >= 2; got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    return frechet_distance_gaussians(*_mean_cov(a), *_mean_cov(b))


def classifier_frechet_distance(images_a, images_b, clf=None):
    """Frechet distance of the classifier's penultimate features of two image sets (rows of 784 pixels in [0, 1])."""
    clf = C.load_pretrained() if clf is None else clf
    return frechet_distance(C.features(clf, _images(images_a, clf)), C.features(clf, _images(images_b, clf)))


def _images(x, clf):
    x = check_batch(B.asarray(x), clf.in_features, "metrics")
    return x if x.dtype == clf.head.W.data.dtype else B.astype(x, clf.head.W.data.dtype)


def conditional_accuracy(images, digits, clf=None):
    """Share of images in which the classifier finds the digit that was asked for (digits: (N,) integers)."""
    clf = C.load_pretrained() if clf is None else clf
    return C.accuracy(clf, _images(images, clf), digits)


def digit_shares(images, clf=None):
    """Share of the images the classifier assigns to each digit, (num_classes,): all near 0.1 means no collapse."""
    clf = C.load_pretrained() if clf is None else clf
    xp = B.get_xp()
    pred = C.predict(clf, _images(images, clf))
    onehot = B.astype(xp.reshape(pred, (-1, 1)) == xp.reshape(B.arange(clf.num_classes), (1, -1)), "float64")
    return xp.mean(onehot, axis=0)


def sharpness(images, image_shape=(28, 28)):
    """Mean Laplacian energy: the mean over images and interior pixels of (4 x - the 4 neighbours)^2.

    Blurring lowers it; compare samples with real images of the same data set.
    """
    xp = B.get_xp()
    x = xp.reshape(B.astype(B.asarray(images), "float64"), (-1, *image_shape))
    c = x[:, 1:-1, 1:-1]
    lap = 4.0 * c - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]
    return float(xp.mean(lap * lap))


def score(samples, real, clf=None, digits=None):
    """Every figure for one model's samples against real images, as a dict (see the module docstring).

    ``digits`` (the digit each sample was asked to show) adds the conditional accuracy.
    """
    clf = C.load_pretrained() if clf is None else clf
    out = {"frechet_distance": classifier_frechet_distance(samples, real, clf),
           "sharpness": sharpness(samples), "sharpness_real": sharpness(real),
           "digit_shares": [float(v) for v in B.to_numpy(digit_shares(samples, clf))]}
    if digits is not None:
        check_labels(B.asarray(digits), samples.shape[0], clf.num_classes, "score")
        out["conditional_accuracy"] = conditional_accuracy(samples, digits, clf)
    return out
