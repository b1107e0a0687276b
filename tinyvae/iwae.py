"""The importance-weighted objective (IWAE, Burda et al. 2016): log weights, the weighted loss and its backward, and
the bound ``iwae_bound`` that evaluates any VAE with it.

With k codes z_ij = mu_i + sigma_i * eps_ij per example and the weights w_ij = p(x_i|z_ij) p(z_ij) / q(z_ij|x_i),

    L_k = -1/N sum_i log (1/k sum_j w_ij)        (an upper bound on -log p(x), tighter as k grows; L_1 = -ELBO).

``VAE(..., k=5).loss`` trains on it (``weighted_loss``) and ``VAE.backward`` hands the gradient to ``backward`` here;
``iwae_bound`` uses the same ``log_weights`` to score a trained model with k = 1000. The VAE's own (graded) backward
is the plain ELBO's: nothing in this file is part of the assignment.

    nll = iwae_bound(model, data.x_test[:1000], k=1000)      # an upper bound on -log p(x), in nats
"""
import math

from . import backend as B
from . import losses
from .checks import model_data, model_labels, need_vae, positive_int
from .losses import LossParts, recon_constant
from .reparam import reparameterize_backward, reparameterize_fast
from .train import chunks, model_call


class Weighted(tuple):
    """What an importance-weighted loss keeps for ``backward``: (x, eps, z, std, out, dlog_w); the tag tells
    ``VAE.backward`` which backward the last loss needs."""


# ------------------------------------------------------------------------------------------------ the log weights
def log_weights(model, x, mu, logvar, eps, beta=1.0):
    """log w_ij = log p(x_i|z_ij) + beta * [log p(z_ij) - log q(z_ij|x_i)],  z_ij = mu_i + sigma_i * eps_ij.

    x (m, D) images, mu and logvar (m, K) from ``model.encode(x)``, eps (m, k, K) -> log w (m, k). With
    log N(z; m, s^2) = -1/2 sum_j [(z_j - m_j)^2 / s_j^2 + log s_j^2 + log 2 pi], the log 2 pi terms cancel:
        log p(z) - log q(z|x) = -1/2 |z|^2 + 1/2 |eps|^2 + 1/2 sum_j logvar_j
    for the N(0, I) prior; log p(z) is ``model.log_prior(z)``, so a GMVAE is bounded under its mixture.
    beta = 1 gives the true importance weights (``iwae_bound`` uses them); training with k > 1 uses the model's
    beta. All m * k codes go through the decoder in one batch of large matrix products.
    """
    return _log_weights(model, model._input(x), mu, logvar, eps, beta)[0]


def _log_weights(model, x, mu, logvar, eps, beta):
    """(log w (m, k), log p(x|z) (m, k), z (m, k, K), std (m, 1, K), decoder outputs (m * k, D)), x checked."""
    xp = B.get_xp()
    m, k, latent = eps.shape
    # the reparameterization itself, broadcast over the k codes of each example: mu, logvar (m, 1, K)
    z, std = reparameterize_fast(xp.expand_dims(mu, axis=1), xp.expand_dims(logvar, axis=1), eps)
    out = model._decode_raw(xp.reshape(z, (m * k, latent)))
    log_px = _log_px_k(model, xp.reshape(out, (m, k, model.input_dim)), x)
    # log p(z) - log q(z|x), log q = -1/2 sum_j [eps_j^2 + logvar_j + log 2 pi]; log p(z) is the model's own prior
    # (``model.log_prior``: N(0, I) for a VAE, where the log 2 pi terms cancel; a mixture for a GMVAE)
    log_q = -0.5 * (xp.sum(eps * eps, axis=2) + xp.sum(logvar, axis=1, keepdims=True) + latent * math.log(2.0 * math.pi))
    return log_px + beta * (model.log_prior(z) - log_q), log_px, z, std, out


def _repeat_rows(x, k):
    """x (m, D) -> (m * k, D): each image once per code, in the order the codes were decoded."""
    xp = B.get_xp()
    m, dim = x.shape
    return xp.reshape(xp.broadcast_to(xp.expand_dims(x, axis=1), (m, k, dim)), (m * k, dim))


def _log_px_k(model, out, x):
    """log p(x | z) for k codes per example: ``out`` (m, k, D) decoder outputs, ``x`` (m, D) images -> (m, k)."""
    xp = B.get_xp()
    if model.likelihood == "bernoulli":
        return -losses.bce_with_logits_per_example_fast(out, xp.expand_dims(x, axis=1))  # x never copied k times
    m, k, dim = out.shape
    return xp.reshape(model.log_likelihood(xp.reshape(out, (m * k, dim)), _repeat_rows(x, k)), (m, k))


def _dlog_px(model, out, x):
    """d log p(x|z) / d out for k codes per example: out (m * k, D), x (m, D) -> (m * k, D).

    The reconstruction loss's own gradient (``model._recon``: BCE on logits or squared error, averaged over its
    m * k rows), times -(m * k): log p(x|z) is minus that loss per row (up to a constant).
    """
    rows = out.shape[0]
    _, drecon = model._recon(out, _repeat_rows(x, rows // x.shape[0]))
    return drecon * (-float(rows))


def iwae_eps(model, n, eps, rng):
    """eps (n, k, K): the one given (checked), or model.k fresh draws per example from ``rng``."""
    if eps is None:
        return B.as_generator(rng).standard_normal((n, model.k, model.latent_dim), model.dtype)
    eps = B.asarray(eps, dtype=model._dtype)
    if eps.ndim != 3 or eps.shape[0] != n or eps.shape[2] != model.latent_dim:
        raise ValueError(f"{type(model).__name__}: eps for the importance-weighted loss must have shape "
                         f"(N, k, K) = ({n}, k, {model.latent_dim}); got {tuple(eps.shape)}")
    return eps


# ------------------------------------------------------------------------------------ the objective and its backward
def importance_weighted_loss(model, x, y=None, eps=None, rng=None):
    """The IWAE objective of ``model``, -1/N sum_i log (1/k sum_j w_ij) (``log_weights``, with the model's beta), as
    LossParts; ``model.backward()`` then gives its gradient.

    k = model.k codes per example, or eps.shape[1] when ``eps`` (N, k, K) is given (any k, 1 included: then it is
    the one-sample ELBO with a sampled KL term, whose mean over eps is the VAE's loss). In the LossParts, recon is
    the mean over all N * k codes of -log p(x|z), and kl = total - recon: what the prior and posterior add to the
    bound. For a Gaussian decoder the constant D/2 log(pi) is left out of both, as in the VAE's loss. ``y`` (N,):
    the labels of a conditional model.
    """
    x = model._input(x)
    if getattr(model, "needs_labels", False):
        model._condition(y, x.shape[0], "importance_weighted_loss")
    return weighted_loss(model, x, eps, rng)


def weighted_loss(model, x, eps, rng):
    """``importance_weighted_loss`` for a checked batch x (labels already set): what ``VAE.loss`` runs when k > 1."""
    mu, logvar = model._encode(x)
    eps = iwae_eps(model, x.shape[0], eps, rng)
    log_w, log_px, z, std, out = _log_weights(model, x, mu, logvar, eps, model.beta)
    total, dlog_w = losses.iwae_loss_fast(log_w)  # 0-d device arrays on CuPy: read once per check, not here
    const = recon_constant(model)
    recon = -B.get_xp().mean(B.astype(log_px, "float64")) - const
    recon = recon if B.backend_name() == "cupy" else float(recon)
    model._loss_grads = Weighted((x, eps, z, std, out, dlog_w))
    return LossParts(total - const, recon, total - const - recon)


def weighted_per_example(model, x, mu, logvar, eps):
    """{"loss", "recon", "kl"} as arrays (N,) of the weighted objective, no gradient."""
    log_w, log_px, *_ = _log_weights(model, x, mu, logvar, eps, model.beta)
    const = recon_constant(model)
    total = losses.iwae_loss_per_example(log_w) - const
    recon = -B.get_xp().mean(log_px, axis=1) - const
    return {"loss": total, "recon": recon, "kl": total - recon}


def backward(model, loss_grads):
    """The gradient of the importance-weighted objective into every parameter's .grad.

    With L = -1/N sum_i log (1/k sum_j w_ij) and the normalized weights w~_ij = w_ij / sum_l w_il (a softmax over
    j of log w_ij), dL/dlog w_ij = -w~_ij / N (``losses.iwae_loss``), so
        dL/dtheta = sum_ij (-w~_ij / N) * d log w_ij / dtheta:
    every code's own gradient of log w, weighted by its normalized weight. For one code z = mu + sigma * eps,
    sigma = exp(logvar / 2), log w = log p(x|z) + beta * (-1/2 |z|^2 + 1/2 |eps|^2 + 1/2 sum_j logvar_j):
        d log w / d out    = -(the reconstruction loss's gradient per row)                (``_dlog_px``)
        d log w / d z      = decoder'(d log w / d out) - beta * z                          (+ the log prior)
        d log w / d mu     = d log w / d z                                                 (z = mu + sigma eps)
        d log w / d logvar = d log w / d z * eps * sigma / 2 + beta / 2                    (- log q)
    summed over the k codes of each example at mu and logvar, then back through the heads and the encoder.
    ``loss_grads``: the ``Weighted`` (x, eps, z, std, out, dlog_w) that ``weighted_loss`` kept in
    ``model._loss_grads``. Returns None: the results are the parameters' .grad.
    Shapes: dlog_w (N, k); out, dout (N*k, D); z, eps, dz (N, k, K); std (N, 1, K); dmu, dlogvar (N, K).
    At k = 1, w~ = 1: the one-sample ELBO's gradient with a sampled KL term (the VAE's uses the KL's exact
    gradient: equal in expectation over eps).
    """
    xp = B.get_xp()
    x, eps, z, std, out, g = loss_grads
    n, k, latent = eps.shape
    g3 = xp.expand_dims(g, axis=2)  # (N, k, 1): each code's weight in the gradient
    dout = _dlog_px(model, out, x) * xp.reshape(g, (n * k, 1))
    dz = xp.reshape(model._latent_grad(model.decoder.backward(dout)), (n, k, latent)) - model.beta * z * g3
    dmu, dlogvar = reparameterize_backward(dz, eps, std)
    dlogvar = xp.sum(dlogvar, axis=1) + 0.5 * model.beta * xp.sum(g3, axis=1)
    model._heads_backward(xp.sum(dmu, axis=1), dlogvar)


# ------------------------------------------------------------------------------------------------- the bound
def _iwae_noise(model, a, b, s, t, k, eps, gen):
    """eps for examples a..b-1 and samples s..t-1, (b - a, t - s, K): the given eps, or the next draws of ``gen``.

    The draws are taken in (example, sample) order from one stream, so on NumPy (and the strict backend) the
    numbers, and the bound, do not depend on how the work is chunked; CuPy's device generator fills a block in
    parallel, so there the bound changes with ``batch_size`` by a Monte Carlo amount (a different sample).
    """
    if eps is not None:
        return eps[a:b, s:t, :]
    return gen.standard_normal((b - a, t - s, model.latent_dim), model.dtype)


def _logsumexp_update(run_max, run_sum, log_w):
    """Fold log_w (m, s) into a running log-sum-exp kept as (max, sum of exp(. - max)), each (m,).

    The old sum is rescaled to the new maximum, then this chunk's terms are added: exp never overflows, and the
    largest term contributes exactly 1.
    """
    xp = B.get_xp()
    new_max = xp.maximum(run_max, xp.max(log_w, axis=1))
    run_sum = run_sum * xp.exp(run_max - new_max) + xp.sum(xp.exp(log_w - xp.expand_dims(new_max, axis=1)), axis=1)
    return new_max, run_sum


def iwae_chunk_rows(model):
    """How many (example, sample) rows ``iwae_bound`` sends through the decoder at once by default.

    About 16 MB of decoder output on the CPU (5,349 rows of 784 float32 pixels: its temporaries are then reused
    from one chunk to the next, where 64 MB chunks took 1.5 times as long on a 2-core CPU, every new array costing
    fresh pages) and 256 MB on a GPU, where fewer and larger launches win. A model whose decoder makes far larger
    intermediate arrays than its output (a convolutional one) names its own number, ``decode_rows``.
    """
    if getattr(model, "decode_rows", None):
        return model.decode_rows
    budget = 2**28 if B.backend_name() == "cupy" else 2**24
    return max(1, budget // (model.input_dim * (8 if model.dtype == "float64" else 4)))


def iwae_bound(model, x, k=1000, batch_size=None, seed=0, eps=None, labels=None):
    """The importance-weighted upper bound on -log p(x) (Burda et al. 2016), mean per example in nats (a float).

        -log p(x) <= -log (1/k) sum_i w_i,    w_i = p(x|z_i) p(z_i) / q(z_i|x),    z_i = mu + sigma * eps_i.

    With log N(z; m, s^2) = -1/2 sum_j [(z_j - m_j)^2 / s_j^2 + log s_j^2 + log 2 pi]:
        log p(z_i) = -1/2 |z_i|^2 - K/2 log 2 pi,    log q(z_i|x) = -1/2 |eps_i|^2 - 1/2 sum_j logvar_j - K/2 log 2 pi,
    and log p(x|z) = ``model.log_likelihood`` (the log weights are ``log_weights``, the same code the IWAE
    objective trains on; for a "gaussian" decoder this includes D/2 log pi, which the
    training loss leaves out, so compare it with ``evaluate`` only for "bernoulli" models).
    The average over i is taken in log space with the max subtracted first (log-mean-exp), so it never under-
    flows. k = 1 is the one-sample negative ELBO with a sampled KL term; the bound tightens (decreases) as k grows.
    ``beta`` plays no part: this bounds the model's true likelihood.

    The noise is drawn from ``Generator(seed)`` in (example, sample) order, one block per chunk (or ``eps`` of
    shape (N, k, K) is used). ``batch_size`` is the largest number of (example, sample) rows sent through the
    decoder at once; None picks ``iwae_chunk_rows(model)``. Chunks cover several examples, or part of one
    example's k samples (combined with a running log-sum-exp), so k = 1000 on 10,000 images runs in bounded
    memory. On NumPy the figure does not depend on ``batch_size``; on CuPy it does, within the Monte Carlo error
    (see ``_iwae_noise``). ``labels`` (N,): for a conditional model, which then
    bounds -log p(x|y).
    """
    need_vae(model, "iwae_bound")
    xp = B.get_xp()
    positive_int(k, "iwae_bound: k")
    x = model_data(model, x, "iwae_bound: x")
    y = model_labels(model, labels, x.shape[0], "iwae_bound: labels")
    n, latent = x.shape[0], model.latent_dim
    batch_size = iwae_chunk_rows(model) if batch_size is None else positive_int(batch_size, "iwae_bound: batch_size")
    if eps is not None:
        eps = B.asarray(eps, dtype=model.dtype)
        if tuple(eps.shape) != (n, k, latent):
            raise ValueError(f"iwae_bound: eps must have shape (N, k, K) = {(n, k, latent)}, got {tuple(eps.shape)}")
    gen = B.Generator(seed)
    per_chunk, k_chunk = max(1, batch_size // k), min(k, batch_size)  # examples per chunk, samples per pass
    total = B.zeros((), "float64")
    was_training = model.training
    model.eval()
    try:
        for a, b in chunks(n, per_chunk):
            xc = x[a:b, :]
            mu, logvar = model_call(model.encode, xc, None if y is None else y[a:b])
            run_max, run_sum = B.full((b - a,), -math.inf, model.dtype), B.zeros((b - a,), model.dtype)
            for s, t in chunks(k, k_chunk):
                log_w = log_weights(model, xc, mu, logvar, _iwae_noise(model, a, b, s, t, k, eps, gen))
                run_max, run_sum = _logsumexp_update(run_max, run_sum, log_w)
            bounds = xp.log(run_sum) + run_max - math.log(k)
            total = total - B.astype(xp.sum(bounds), "float64")  # summed on the device, read once
    finally:
        model.train(was_training)
    return float(total) / n
