"""PCA by the singular value decomposition, on the active backend: the linear baseline for the autoencoders.

For centred data X - mean = U S V^T (N x D, rows are examples), the principal directions are the rows of V^T and
the variance along direction i is S_i^2 / (N - 1). Projecting onto the first n directions and back,
x_hat = mean + (x - mean) V_n V_n^T, is the best rank-n linear reconstruction in squared error: on the training data
its mean per-example squared error is sum_{i > n} S_i^2 / N (the discarded variances times (N - 1) / N). A linear
autoencoder with squared error (likelihood="gaussian") can at best match it.
"""
from . import backend as B
from .checks import positive_int


class PCA:
    """Principal component analysis with ``n_components`` directions.

    After ``fit(x)``: ``mean_`` (D,), ``components_`` (n_components, D) with orthonormal rows, ``explained_variance_``
    (S_i^2 / (N - 1), the sample variance along each direction, largest first) and ``explained_variance_ratio_``
    (the fraction of the total variance). Signs are fixed so that each component's entry of largest magnitude is
    positive (the SVD alone leaves each sign arbitrary).
    """

    def __init__(self, n_components):
        positive_int(n_components, "PCA: n_components")
        self.n_components = n_components
        self.mean_ = self.components_ = self.explained_variance_ = self.explained_variance_ratio_ = None

    def _data(self, x, who):
        if not B.is_array(x):
            x = B.asarray(x)
        if not B.is_floating(x):
            x = B.asarray(x, dtype=B.dtype_name(None) if self.mean_ is None else self.mean_.dtype)
        if x.ndim != 2:
            raise ValueError(f"PCA.{who} expects a 2-D array (N, D) with examples as rows; got shape {tuple(x.shape)}")
        if self.mean_ is not None:
            width = self.mean_.shape[0]
            if x.shape[1] != width:
                raise ValueError(f"PCA.{who}: this PCA was fitted on {width} features; got shape {tuple(x.shape)}")
            if x.dtype != self.mean_.dtype:
                x = B.asarray(x, dtype=self.mean_.dtype)
        return x

    def _check_fitted(self, who):
        if self.components_ is None:
            raise RuntimeError(f"PCA.{who}: this PCA is not fitted yet; call fit(x) first")

    def fit(self, x):
        """Find the principal directions of ``x`` (N, D); returns self."""
        xp = B.get_xp()
        self.mean_ = None  # refitting starts afresh: any width is allowed
        x = self._data(x, "fit")
        n, d = x.shape
        if self.n_components > min(n, d):
            raise ValueError(f"PCA: n_components={self.n_components} is larger than min(N, D) = {min(n, d)} for "
                             f"data of shape {(n, d)}")
        mean = xp.mean(x, axis=0)
        _, s, vt = xp.linalg.svd(x - mean, full_matrices=False)
        # Deterministic signs: flip each row of V^T whose largest-magnitude entry is negative.
        flip = xp.max(vt, axis=1) < -xp.min(vt, axis=1)
        vt = xp.where(flip[:, None], -vt, vt)
        var = s * s / max(n - 1, 1)
        k = self.n_components
        self.mean_ = mean
        self.components_ = vt[:k, :]
        self.explained_variance_ = var[:k]
        self.explained_variance_ratio_ = var[:k] / xp.sum(var)
        return self

    def transform(self, x):
        """Coordinates along the components: (x - mean) V_n, shape (N, n_components)."""
        self._check_fitted("transform")
        return (self._data(x, "transform") - self.mean_) @ self.components_.T

    def fit_transform(self, x):
        return self.fit(x).transform(x)

    def inverse_transform(self, z):
        """Back to data space: mean + z V_n^T, shape (N, D)."""
        self._check_fitted("inverse_transform")
        if not B.is_array(z):
            z = B.asarray(z)
        z = B.asarray(z, dtype=self.mean_.dtype)
        if z.ndim != 2 or z.shape[1] != self.n_components:
            raise ValueError(f"PCA.inverse_transform expects shape (N, {self.n_components}); got {tuple(z.shape)}")
        return z @ self.components_ + self.mean_

    def reconstruction_error(self, x):
        """Mean per-example squared error sum_d (x - x_hat)^2 (a float), comparable with a "gaussian" AE's recon."""
        self._check_fitted("reconstruction_error")
        xp = B.get_xp()
        x = self._data(x, "reconstruction_error")
        diff = x - self.inverse_transform(self.transform(x))
        return float(xp.sum(diff * diff)) / x.shape[0]

    def __repr__(self):
        return f"PCA(n_components={self.n_components})"
