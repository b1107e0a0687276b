"""The VAE with a mixture-of-Gaussians prior (GMVAE, as in Stanford CS236's homework 2).

    p(z) = 1/K sum_k N(z; m_k, diag(v_k)),    v_k = softplus(rho_k) + 1e-8,

with K learnable components (means m and pre-variances rho, both (K, d)). An N(0, I) prior leaves "holes": regions
where p(z) is high but no q(z|x) puts mass, whose decoded samples look like no digit. A learned mixture can sit where
the posteriors are. The KL term has no closed form, so it is estimated with the one sample z the decoder sees:

    KL(q(z|x) || p(z)) ~ log q(z|x) - log p(z),    z = mu + exp(logvar / 2) * eps.

The log-mixture density is a log-sum-exp over the components; its gradient is a softmax (the responsibilities
r_nk = N_k(z_n) / sum_l N_l(z_n)) times each component's own gradient: ``log_mixture_density_backward``.
"""
import math

from . import backend as B
from . import losses
from .activations import sigmoid, softplus
from .errors import InputError
from .losses import LossParts
from .models import LOG_2PI, VAE
from .module import Parameter

VARIANCE_FLOOR = 1e-8  # the homework's: v = softplus(rho) + 1e-8 keeps every variance positive
PRIOR_BLOCK_ROWS = 512  # codes per block in ``GMVAE.log_prior``: (512, K, d) temporaries, 20 MB at K=500, d=10


def log_normal_components(z, means, variances):
    """log N(z_n; m_k, diag(v_k)) for every code and component: z (N, d), means and variances (K, d) -> (N, K).

        log N(z; m, v) = -1/2 sum_j [(z_j - m_j)^2 / v_j + log v_j + log 2 pi]
    """
    xp = B.get_xp()
    diff = xp.expand_dims(z, axis=1) - xp.expand_dims(means, axis=0)  # (N, K, d)
    return -0.5 * xp.sum(diff * diff / variances + xp.log(variances) + LOG_2PI, axis=2)


def log_mixture_density(z, means, variances):
    """log p(z) = log (1/K sum_k N(z; m_k, diag(v_k))) for each code: z (N, d), means, variances (K, d) -> (N,).

    The sum is a log-sum-exp shifted by each row's largest component (``losses._logsumexp``): no exp underflows to
    a log of 0, even for codes far from every component.
    """
    xp = B.get_xp()
    log_comp = log_normal_components(z, means, variances)
    return xp.reshape(losses._logsumexp(log_comp), (-1,)) - math.log(means.shape[0])


def log_mixture_density_backward(dlogp, z, means, variances):
    """The gradients of sum_n dlogp_n * log p(z_n) w.r.t. z, the means and the variances.

    With r_nk = softmax_k(log N(z_n; m_k, v_k)) (the responsibilities: each row sums to 1), g_nk = dlogp_n r_nk and
    u_nkj = (z_nj - m_kj) / v_kj:
        dz_n  = -sum_k g_nk u_nk                                  (each component pulls z towards its mean)
        dm_k  =  sum_n g_nk u_nk
        dv_k  =  sum_n g_nk (u_nk^2 - 1 / v_k) / 2
    dlogp (N,); z, dz (N, d); means, variances, dmeans, dvariances (K, d).
    """
    xp = B.get_xp()
    log_comp = log_normal_components(z, means, variances)
    resp = xp.exp(log_comp - losses._logsumexp(log_comp))  # (N, K)
    g = xp.expand_dims(xp.reshape(dlogp, (-1, 1)) * resp, axis=2)  # (N, K, 1)
    u = (xp.expand_dims(z, axis=1) - xp.expand_dims(means, axis=0)) / variances  # (N, K, d)
    dz = -xp.sum(g * u, axis=1)
    dmeans = xp.sum(g * u, axis=0)
    dvariances = 0.5 * xp.sum(g * (u * u - 1.0 / variances), axis=0)
    return dz, dmeans, dvariances


# ==== The fast twins ==========================================================================================
# The plain formulas above build (N, K, d) arrays: 485,000 numbers for a batch of 97 codes and K = 500, a dozen
# times per step, and 50 billion for the IWAE bound of 10,000 images at m = 1000. Expanding the square makes every
# sum over d a matrix product, (N, d) @ (d, K):
#     sum_j (z_j - m_kj)^2 / v_kj = (z^2) @ (1/v)^T - 2 z @ (m/v)^T + sum_j m_kj^2 / v_kj.
# The expanded terms can be far larger than their difference (a code far from a narrow component), so the products
# are taken in float64 whatever the model's dtype; tests keep each twin equal to its plain formula.


def _quadratic_fast(z, means, variances):
    """sum_j (z_nj - m_kj)^2 / v_kj for every code and component, as matrix products in float64: (N, K)."""
    xp = B.get_xp()
    z, means, inv_v = B.astype(z, "float64"), B.astype(means, "float64"), 1.0 / B.astype(variances, "float64")
    return ((z * z) @ inv_v.T - 2.0 * (z @ (means * inv_v).T)
            + xp.reshape(xp.sum(means * means * inv_v, axis=1), (1, -1)))


def log_normal_components_fast(z, means, variances):
    """``log_normal_components`` without the (N, K, d) array (``_quadratic_fast``); (N, K) in z's dtype."""
    if B.plain():
        return log_normal_components(z, means, variances)
    xp = B.get_xp()
    log_det = xp.reshape(xp.sum(xp.log(B.astype(variances, "float64")), axis=1), (1, -1))
    return B.astype(-0.5 * (_quadratic_fast(z, means, variances) + log_det + z.shape[-1] * LOG_2PI), z.dtype)


def log_mixture_density_fast(z, means, variances):
    """``log_mixture_density`` by ``log_normal_components_fast``: (N,)."""
    if B.plain():
        return log_mixture_density(z, means, variances)
    log_comp = log_normal_components_fast(z, means, variances)
    return B.get_xp().reshape(losses._logsumexp(log_comp), (-1,)) - math.log(means.shape[0])


def log_mixture_density_backward_fast(dlogp, z, means, variances):
    """``log_mixture_density_backward`` as matrix products over the codes (float64), with g = dlogp r (N, K),
    G_k = sum_n g_nk and w = 1 / v:
        dz = -(z * (g @ w) - g @ (m w)),   dm = w (g^T z - G m),
        dv = (w^2 (g^T z^2 - 2 m g^T z + G m^2) - G w) / 2     (g^T (z - m)^2, the square expanded)."""
    if B.plain():
        return log_mixture_density_backward(dlogp, z, means, variances)
    xp, dtype = B.get_xp(), z.dtype
    log_comp = log_normal_components_fast(z, means, variances)
    resp = xp.exp(log_comp - losses._logsumexp(log_comp))
    g = B.astype(xp.reshape(dlogp, (-1, 1)) * resp, "float64")  # (N, K)
    z, means, inv_v = B.astype(z, "float64"), B.astype(means, "float64"), 1.0 / B.astype(variances, "float64")
    total = xp.reshape(xp.sum(g, axis=0), (-1, 1))  # G (K, 1)
    gz, gz2 = g.T @ z, g.T @ (z * z)  # (K, d)
    dz = -(z * (g @ inv_v) - g @ (means * inv_v))
    dmeans = inv_v * (gz - total * means)
    dvariances = 0.5 * (inv_v * inv_v * (gz2 - 2.0 * means * gz + total * means * means) - total * inv_v)
    return B.astype(dz, dtype), B.astype(dmeans, dtype), B.astype(dvariances, dtype)


class GMVAE(VAE):
    """A VAE whose prior is a mixture of ``components`` Gaussians with learned means and variances.

    Objective per example: recon(decoder(z), x) + beta * [log q(z|x) - log p(z)], one sampled z (the homework's
    one-sample KL). With log q(z|x) = -1/2 sum_j [eps_j^2 + logvar_j + log 2 pi] for z = mu + sigma * eps:
        d/dz of -log p(z)   from ``log_mixture_density_backward``, then through the reparameterization,
        d/dlogvar of log q  = -1/2 per dimension (its mu- and z-dependence cancel with eps fixed),
        d/drho of -log p    = the variances' gradient times softplus'(rho) = sigmoid(rho).
    Defaults are CS236's: 784-300-300 ELU MLPs, latent 10, K = 500. The encoder keeps the library's logvar head
    (the homework's is softplus + 1e-8: the same family of Gaussians); the prior's variances are softplus + 1e-8.
    The IWAE bound (``iwae.iwae_bound``) uses ``log_prior`` through ``iwae.log_weights``; training is one-sample only.
    """

    kind = "gmvae"
    _config_keys = ("input_dim", "hidden", "latent_dim", "components", "likelihood", "beta", "activation", "dtype")

    def __init__(self, input_dim=784, hidden=(300, 300), latent_dim=10, components=500, likelihood="bernoulli",
                 beta=1.0, activation="elu", dtype=None, rng=None):
        if not isinstance(components, int) or isinstance(components, bool) or components < 1:
            raise InputError(f"components must be a positive int, got {components!r}")
        rng = B.as_generator(rng)
        super().__init__(input_dim, hidden, latent_dim, likelihood, beta, activation, dtype, rng, k=1)
        self.components = components
        # the homework's initialisation: every mean and pre-variance ~ N(0, 1 / (K d)), so v = softplus(~0) ~ 0.69
        scale = 1.0 / math.sqrt(components * latent_dim)
        self.prior_means = Parameter(rng.standard_normal((components, latent_dim), self.dtype) * scale)
        self.prior_rho = Parameter(rng.standard_normal((components, latent_dim), self.dtype) * scale)

    def prior_variances(self):
        """v = softplus(rho) + 1e-8, (K, d)."""
        return softplus(self.prior_rho.data) + VARIANCE_FLOOR

    def log_prior(self, z):
        """log p(z) under the mixture: z (..., d) -> (...), in blocks of codes (bounded memory for the IWAE)."""
        xp = B.get_xp()
        lead, d = tuple(z.shape[:-1]), z.shape[-1]
        flat = xp.reshape(z, (-1, d))
        means, variances = self.prior_means.data, self.prior_variances()
        blocks = [log_mixture_density_fast(flat[a:min(a + PRIOR_BLOCK_ROWS, flat.shape[0]), :], means, variances)
                  for a in range(0, flat.shape[0], PRIOR_BLOCK_ROWS)]
        return xp.reshape(B.concat(blocks, axis=0), lead)

    def _log_q(self, logvar, eps):
        """log q(z|x) at z = mu + sigma * eps: -1/2 sum_j [eps_j^2 + logvar_j + log 2 pi], (N,)."""
        return -0.5 * B.get_xp().sum(eps * eps + logvar + LOG_2PI, axis=1)

    def _forward_parts(self, x, eps, rng):
        """(z, decoder output, kl per example (N,)) for a checked batch x: one z per example."""
        mu, logvar = self._encode(x)
        z = self.reparam.forward(mu, logvar, eps=eps, rng=rng)
        out = self._decode_raw(z)
        kl = self._log_q(logvar, self.reparam._cache[0]) - self.log_prior(z)
        return z, out, kl

    def loss(self, x, eps=None, rng=None):
        """recon + beta * [log q(z|x) - log p(z)], batch mean, for one z per example (``eps`` (N, d) fixes it)."""
        x = self._input(x)
        z, out, kl_n = self._forward_parts(x, eps, rng)
        recon, dout = self._recon(out, x)
        kl = B.get_xp().mean(kl_n)
        self._loss_grads = (dout, z)
        return LossParts(recon + self.beta * kl, recon, kl)

    def loss_per_example(self, x, eps=None, rng=None):
        """{"loss", "recon", "kl"} as arrays (N,), one z per example, no gradient."""
        x = self._input(x)
        _, out, kl = self._forward_parts(x, eps, rng)
        recon = self.recon_per_example(out, x)
        return {"loss": recon + self.beta * kl, "recon": recon, "kl": kl}

    def backward(self):
        """Fill every parameter's .grad with the gradient of the last ``loss`` (its batch mean)."""
        saved = self._saved(self._loss_grads)
        if len(saved) != 2:  # an importance-weighted loss (tinyvae.iwae): its backward assumes an N(0, I) prior
            raise NotImplementedError("GMVAE trains on the one-sample ELBO (loss) only; the IWAE bound "
                                      "(iwae_bound) evaluates it, but its importance-weighted objective has no backward")
        dout, z = saved
        n, weight = z.shape[0], self.beta / z.shape[0]
        dz = self._latent_grad(self.decoder.backward(dout))
        # -beta/N * log p(z): the mixture's gradient into z, its means and its variances
        dlogp = B.full((n,), -weight, self._dtype)
        dz_prior, dmeans, dvariances = log_mixture_density_backward_fast(dlogp, z, self.prior_means.data,
                                                                    self.prior_variances())
        self.prior_means.accumulate(dmeans)
        self.prior_rho.accumulate(dvariances * sigmoid(self.prior_rho.data))
        dmu, dlogvar = self.reparam.backward(dz + dz_prior)
        # +beta/N * log q(z|x) = -beta/(2N) sum_j logvar_j + (terms free of mu and logvar, eps fixed)
        self._heads_backward(dmu, dlogvar - 0.5 * weight)

    def sample_prior(self, n, rng=None):
        """n codes z ~ p(z): a component k uniformly for each, then z = m_k + sqrt(v_k) * eps; (n, d)."""
        xp, gen, n = B.get_xp(), B.as_generator(rng), int(n)
        # random() < 1, but r * K can round up to K in float32: cap it below K before the floor
        pick = B.astype(xp.floor(xp.minimum(gen.random((n,), self.dtype) * self.components, self.components - 0.5)),
                        xp.int64)
        eps = gen.standard_normal((n, self.latent_dim), self.dtype)
        std = xp.sqrt(xp.take(self.prior_variances(), pick, axis=0))
        return xp.take(self.prior_means.data, pick, axis=0) + std * eps

    def sample(self, n, rng=None):
        """n new images: codes from the mixture prior (``sample_prior``), decoded to mean images."""
        return self.decode(self.sample_prior(n, rng))

    def component_means(self):
        """The decoded mean image of every component's mean m_k: (K, D)."""
        return self.decode(self.prior_means.data)
