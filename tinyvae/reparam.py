"""The reparameterization trick: a sample of N(mu, exp(logvar)) written as a differentiable function of mu, logvar.

``reparameterize`` and ``reparameterize_backward`` are the formulas; their ``_fast`` twins, at the end, give the same
numbers (one fused kernel each on CuPy) and are what ``Reparameterize`` calls.
"""
from . import backend as B
from .module import Module


def reparameterize(mu, logvar, eps):
    """(z, std) with std = exp(logvar / 2) and z = mu + std * eps.   mu, logvar, eps, z, std: (N, K)."""
    std = B.get_xp().exp(logvar / 2)
    return mu + std * eps, std


def reparameterize_backward(dz, eps, std):
    """(dmu, dlogvar) = (dz, dz * eps * std / 2), since dz/dmu = 1 and dz/dlogvar = eps * exp(logvar / 2) / 2.
    dz, eps, std, dmu, dlogvar: (N, K)."""
    return dz, dz * eps * std / 2


class Reparameterize(Module):
    """z = mu + exp(logvar / 2) * eps with eps ~ N(0, I).

    exp(logvar / 2) is the standard deviation: logvar is the log of the VARIANCE, so z has variance exp(logvar).
    Drawing eps outside the function of (mu, logvar) is what lets the gradient flow through the sample.
    Backward: dmu = dz, dlogvar = dz * eps * exp(logvar / 2) / 2.

    ``eps`` may be given (a fixed eps makes the whole objective deterministic for a gradient check); otherwise it
    is drawn from ``rng`` (a tinyvae.Generator, an int seed, or None for the global generator).
    """

    def __init__(self):
        self._cache = None  # (eps, std), kept by forward for backward

    def forward(self, mu, logvar, eps=None, rng=None):
        """z = mu + exp(logvar / 2) * eps.   mu, logvar, eps, z: (N, K)."""
        eps = self._noise(mu, logvar, eps, rng)
        z, std = reparameterize_fast(mu, logvar, eps)
        self._cache = (eps, std)
        return z

    def _noise(self, mu, logvar, eps, rng):
        """eps checked against mu (N, K), or drawn from ``rng`` if None."""
        if tuple(mu.shape) != tuple(logvar.shape) or mu.ndim != 2:
            raise ValueError(
                f"Reparameterize: mu and logvar must both have shape (N, K); "
                f"got {tuple(mu.shape)} and {tuple(logvar.shape)}"
            )
        if eps is None:
            return B.as_generator(rng).standard_normal(tuple(mu.shape), mu.dtype)
        eps = B.asarray(eps, dtype=mu.dtype)
        if tuple(eps.shape) != tuple(mu.shape):
            raise ValueError(f"Reparameterize: eps must have shape {tuple(mu.shape)}; got {tuple(eps.shape)}")
        return eps

    def forward_heads_fast(self, mu_xw, mu_b, logvar_xw, logvar_b, eps=None, rng=None):
        """(mu, logvar, z) from two Dense heads' products h @ W and biases b: ``forward(mu_xw + mu_b,
        logvar_xw + logvar_b)`` with the two bias additions folded into its CuPy kernel (``kernels.heads_reparam``,
        one launch instead of three). CuPy only (``VAE._encode_sample_fast``)."""
        from . import kernels
        eps = self._noise(mu_xw, logvar_xw, eps, rng)
        mu, logvar, z, std = kernels.heads_reparam(mu_xw, mu_b, logvar_xw, logvar_b, eps)
        self._cache = (eps, std)
        return mu, logvar, z

    def backward(self, dz):
        """(dmu, dlogvar) = (dz, dz * eps * std / 2), std = exp(logvar / 2) and eps kept by forward.

        dz: (N, K), the gradient w.r.t. z; returns dmu and dlogvar, each (N, K).
        """
        eps, std = self._saved(self._cache)
        return reparameterize_backward_fast(dz, eps, std)

    def __repr__(self):
        return "Reparameterize()"


# ==== The fast twins ==========================================================================================
# The same numbers as the formulas above in fewer passes over memory, or as one CuPy kernel (tinyvae.kernels).
# Tests keep each pair equal; in plain mode (tinyvae.use_plain) each twin calls its formula.


def reparameterize_fast(mu, logvar, eps):
    """``reparameterize`` with one new array fewer (in place), or one fused kernel on CuPy."""
    if B.plain():
        return reparameterize(mu, logvar, eps)
    if B.fast_gpu():
        from . import kernels
        return kernels.reparam_forward(mu, logvar, eps)
    std = B.get_xp().exp(0.5 * logvar)
    z = std * eps
    z += mu
    return z, std


def reparameterize_backward_fast(dz, eps, std):
    """``reparameterize_backward`` in place on a new array, or one fused kernel on CuPy."""
    if B.plain():
        return reparameterize_backward(dz, eps, std)
    if B.fast_gpu():
        from . import kernels
        return dz, kernels.reparam_backward(dz, eps, std)
    dlogvar = dz * eps
    dlogvar *= std
    dlogvar *= 0.5
    return dz, dlogvar
