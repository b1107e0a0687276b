"""The reparameterization trick: a sample of N(mu, exp(logvar)) written as a differentiable function of mu, logvar."""
from . import backend as B
from .module import Module


class Reparameterize(Module):
    """z = mu + exp(logvar / 2) * eps with eps ~ N(0, I).

    exp(logvar / 2) is the standard deviation: logvar is the log of the VARIANCE, so z has variance exp(logvar).
    Drawing eps outside the function of (mu, logvar) is what lets the gradient flow through the sample.
    Backward: dmu = dz, dlogvar = dz * eps * exp(logvar / 2) / 2.

    ``eps`` may be given (a fixed eps makes the whole objective deterministic for a gradient check); otherwise it
    is drawn from ``rng`` (a tinyvae.Generator, an int seed, or None for the global generator).
    """

    def __init__(self):
        self._eps = self._std = None

    def forward(self, mu, logvar, eps=None, rng=None):
        if tuple(mu.shape) != tuple(logvar.shape) or mu.ndim != 2:
            raise ValueError(
                f"Reparameterize: mu and logvar must both have shape (N, K); "
                f"got {tuple(mu.shape)} and {tuple(logvar.shape)}"
            )
        if eps is None:
            eps = B.as_generator(rng).standard_normal(tuple(mu.shape), mu.dtype)
        else:
            eps = B.asarray(eps, dtype=mu.dtype)
            if tuple(eps.shape) != tuple(mu.shape):
                raise ValueError(f"Reparameterize: eps must have shape {tuple(mu.shape)}; got {tuple(eps.shape)}")
        std = B.get_xp().exp(0.5 * logvar)
        self._eps, self._std = eps, std
        return mu + std * eps

    def backward(self, dz):
        eps = self._saved(self._eps)
        return dz, dz * eps * self._std * 0.5

    def __repr__(self):
        return "Reparameterize()"
