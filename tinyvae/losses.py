"""Losses, each summed over features and averaged over the batch, returned with their gradients.

Every figure is therefore "per example" (nats per image for the Bernoulli decoder). Each loss returns the value as
a Python float and the gradient(s) as arrays of the input's shape; the ``*_per_example`` forms give the (N,) vector
of per-example values, with no gradient, for evaluation.

The plain formulas come first. ``bce_with_logits_fast`` and ``gaussian_kl_fast`` take the same arguments and give
the same numbers with fewer passes (in place, or one fused CuPy kernel); on CuPy they return the value as a 0-d
device array instead of a float, so that a training step never waits for the GPU (``float(value)`` reads it).
"""
import math

from . import backend as B
from .checks import check_labels


def _pair(a, b, who, names):
    if not B.is_array(a):
        a = B.asarray(a)
    if not B.is_array(b) or b.dtype != a.dtype:
        b = B.asarray(b, dtype=a.dtype)
    if a.ndim != 2 or tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"{who}: {names[0]} and {names[1]} must both have shape (N, D); "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return a, b


def mse_per_example(pred, target):
    """sum_d (pred - target)^2 for each row."""
    pred, target = _pair(pred, target, "mse", ("pred", "target"))
    diff = pred - target
    return B.get_xp().sum(diff * diff, axis=1)


def mse(pred, target):
    """Squared error 1/N sum_n sum_d (pred - target)^2.  Gradient: dpred = 2 (pred - target) / N.

    pred, target, dpred: (N, D); value: a float.
    """
    pred, target = _pair(pred, target, "mse", ("pred", "target"))
    n = pred.shape[0]
    diff = pred - target
    value = float(B.get_xp().sum(diff * diff)) / n
    return value, diff * (2.0 / n)


def _bce_terms(logits, target):
    """max(l, 0) - l * x + log1p(exp(-|l|)) element-wise: no exp that could overflow, exact at l = +-1e4."""
    xp = B.get_xp()
    return xp.maximum(logits, 0.0) - logits * target + xp.log1p(xp.exp(-xp.abs(logits)))


def bce_with_logits_per_example(logits, target):
    """sum_d BCE(sigmoid(l), x) for each row, in the stable form."""
    logits, target = _pair(logits, target, "bce_with_logits", ("logits", "target"))
    return B.get_xp().sum(_bce_terms(logits, target), axis=1)


def bce_with_logits(logits, target):
    """Binary cross-entropy of sigmoid(l) against x in [0, 1], from the logits l.

    Value: 1/N sum_n sum_d [max(l, 0) - l x + log1p(exp(-|l|))], which equals -x log s - (1-x) log(1-s) with
    s = sigmoid(l) but never overflows, so it is finite and exact even at l = +-1e4.
    Gradient: dl = (sigmoid(l) - x) / N.   logits, target, dl: (N, D); value: a float.
    """
    logits, target = _pair(logits, target, "bce_with_logits", ("logits", "target"))
    xp = B.get_xp()
    n = logits.shape[0]
    value = float(xp.sum(_bce_terms(logits, target))) / n
    sigmoid = (1.0 + xp.tanh(logits / 2)) / 2  # = 1 / (1 + exp(-l)), with no exp that could overflow
    return value, (sigmoid - target) / n


def gaussian_kl_per_example(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)) for each row."""
    mu, logvar = _pair(mu, logvar, "gaussian_kl", ("mu", "logvar"))
    xp = B.get_xp()
    return 0.5 * xp.sum(mu * mu + xp.exp(logvar) - 1.0 - logvar, axis=1)


def gaussian_kl(mu, logvar):
    """KL(q || p) for q = N(mu, diag(exp(logvar))) and p = N(0, I), averaged over the batch.

    Value: 1/N sum_n 1/2 sum_j (mu^2 + exp(logvar) - 1 - logvar); zero exactly at mu = 0, logvar = 0.
    Gradients: dmu = mu / N, dlogvar = (exp(logvar) - 1) / (2N).   mu, logvar, dmu, dlogvar: (N, K).
    """
    mu, logvar = _pair(mu, logvar, "gaussian_kl", ("mu", "logvar"))
    xp = B.get_xp()
    n = mu.shape[0]
    value = 0.5 * float(xp.sum(mu * mu + xp.exp(logvar) - 1.0 - logvar)) / n
    return value, mu / n, (xp.exp(logvar) - 1.0) / (2 * n)


def weighted_sum(a, weight, b):
    """a + weight * b for two loss values (recon + beta * kl), in float64 whatever they are: Python floats on the
    CPU, 0-d float32 device arrays from the ``_fast`` twins on CuPy (widened on the device, so the total is as exact
    as the CPU's and nothing is read from the GPU)."""
    if _on_gpu() and B.is_array(a) and B.is_array(b) and a.dtype == b.dtype:
        from . import kernels
        return kernels.weighted_total(a, weight, b)  # one launch instead of four
    wide = lambda v: B.astype(v, "float64") if B.is_array(v) else v  # noqa: E731
    return wide(a) + weight * wide(b)


def _log_softmax(logits):
    """log softmax by rows, shifted by the row maximum so that exp never overflows."""
    xp = B.get_xp()
    shifted = logits - xp.max(logits, axis=1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))


def _logits_labels(logits, labels, who):
    if not B.is_array(logits):
        logits = B.asarray(logits)
    if logits.ndim != 2 or not B.is_floating(logits):
        raise ValueError(f"{who}: logits must be a floating (N, C) array; got shape {tuple(logits.shape)} "
                         f"and dtype {logits.dtype}")
    return logits, check_labels(labels, logits.shape[0], logits.shape[1], who)


def _one_hot(labels, num_classes, dtype):
    xp = B.get_xp()
    return B.astype(xp.reshape(labels, (-1, 1)) == xp.reshape(B.arange(num_classes), (1, -1)), dtype)


def softmax_cross_entropy_per_example(logits, labels):
    """-log softmax(logits)[n, labels[n]] for each row: (N,)."""
    logits, labels = _logits_labels(logits, labels, "softmax_cross_entropy")
    onehot = _one_hot(labels, logits.shape[1], logits.dtype)
    return -B.get_xp().sum(onehot * _log_softmax(logits), axis=1)


def softmax_cross_entropy(logits, labels):
    """Cross-entropy of softmax(logits) against integer class labels, averaged over the batch.

    Value: 1/N sum_n -log p[n, y_n] with p = softmax(logits) by rows, computed as a log-softmax shifted by each
    row's maximum (stable at logits of +-1e4).
    Gradient: dlogits = (p - onehot(y)) / N.   logits, dlogits: (N, C); labels: (N,) integers in [0, C).
    """
    logits, labels = _logits_labels(logits, labels, "softmax_cross_entropy")
    xp = B.get_xp()
    n = logits.shape[0]
    logp = _log_softmax(logits)
    onehot = _one_hot(labels, logits.shape[1], logits.dtype)
    value = -float(xp.sum(onehot * logp)) / n
    return value, (xp.exp(logp) - onehot) / n


def _logsumexp(a):
    """log sum_j exp(a_ij) by rows, (N, 1), shifted by the row maximum so that exp never overflows."""
    xp = B.get_xp()
    top = xp.max(a, axis=1, keepdims=True)
    return top + xp.log(xp.sum(xp.exp(a - top), axis=1, keepdims=True))


def _log_weights_2d(log_w, who):
    if not B.is_array(log_w):
        log_w = B.asarray(log_w)
    if log_w.ndim != 2 or log_w.shape[1] < 1 or not B.is_floating(log_w):
        raise ValueError(f"{who}: log_w must be a floating (N, k) array of log importance weights, k >= 1; got "
                         f"shape {tuple(log_w.shape)} and dtype {log_w.dtype}")
    return log_w


def iwae_loss_per_example(log_w):
    """-log (1/k sum_j w_ij) = log k - logsumexp_j(log w_ij) for each row of log_w (N, k): (N,)."""
    log_w = _log_weights_2d(log_w, "iwae_loss")
    return math.log(log_w.shape[1]) - B.get_xp().reshape(_logsumexp(log_w), (-1,))


def iwae_loss(log_w):
    """The negative importance-weighted bound (Burda et al. 2016) from log weights (N, k), averaged over the batch.

    Value: 1/N sum_i [log k - logsumexp_j(log w_ij)] = -1/N sum_i log (1/k sum_j w_ij), the log-sum-exp shifted by
    each row's maximum (finite and exact at log w of +-1e4). At k = 1 it is -1/N sum_i log w_i.
    Gradient: dlog_w = -w~ / N, with w~_ij = w_ij / sum_l w_il = exp(log w_ij - logsumexp_l(log w_il)) the
    normalized importance weights (a softmax over each row; every row of w~ sums to 1).
    log_w, dlog_w: (N, k); value: a float.
    """
    log_w = _log_weights_2d(log_w, "iwae_loss")
    xp = B.get_xp()
    n, k = log_w.shape
    lse = _logsumexp(log_w)
    value = math.log(k) - float(xp.sum(lse)) / n
    return value, -xp.exp(log_w - lse) / n


# ==== The fast twins ==========================================================================================
# Each computes the plain formula above with the same arguments and the same numbers, in fewer passes (in place)
# or as one CuPy kernel (tinyvae.kernels). Tests keep each pair equal; in plain mode (tinyvae.use_plain) each twin
# calls its plain formula.


def _on_gpu():
    return B.fast_gpu()


def mse_fast(pred, target):
    """``mse`` with the value left on the device on CuPy (a 0-d array, read by ``float``), so that a training step
    with a Gaussian decoder never waits for the GPU; the same float as ``mse`` elsewhere."""
    if B.plain():
        return mse(pred, target)
    pred, target = _pair(pred, target, "mse", ("pred", "target"))
    n = pred.shape[0]
    diff = pred - target
    value = B.get_xp().sum(diff * diff) / n
    return (value if _on_gpu() else float(value)), diff * (2.0 / n)


def softmax_cross_entropy_fast(logits, labels):
    """``softmax_cross_entropy`` without a read from the device: the value stays a 0-d array on CuPy (a float
    elsewhere), and the labels' shape and dtype are checked but not their range, which the caller checked once
    (``ssvae.fit_iterations`` checks its labeled set before the first step). The same numbers as the plain one."""
    if B.plain():
        return softmax_cross_entropy(logits, labels)
    if not B.is_array(logits):
        logits = B.asarray(logits)
    labels = check_labels(labels, logits.shape[0], logits.shape[1], "softmax_cross_entropy", values=False)
    xp = B.get_xp()
    n = logits.shape[0]
    logp = _log_softmax(logits)
    onehot = _one_hot(labels, logits.shape[1], logits.dtype)
    value = -xp.sum(onehot * logp) / n
    return (value if _on_gpu() else float(value)), (xp.exp(logp) - onehot) / n


def _sum_log(one_plus_e):
    """sum_d log(1 + e_d) over the last axis, for 1 + e_d in [1, 2], with one log per 16 values instead of one each.

    A product of 16 values in [1, 2] stays below 2^16: the halves of each row are multiplied together (up to four
    times, while the width is even), then the logs of the products are summed. NumPy's log1p is a scalar loop, five
    times slower than its log, and this term is most of a BCE's value. The price is the rounding of each 1 + e: at
    most D * 2^-24 nats per row in float32 (5e-5 for D = 784; about 1e-6 in practice), D * 2^-53 in float64. Only
    loss VALUES use it; no gradient does.
    """
    xp = B.get_xp()
    e = one_plus_e
    for _ in range(4):
        width = e.shape[-1]
        if width % 2:
            break
        e = e[..., :width // 2] * e[..., width // 2:]
    return xp.sum(xp.log(e), axis=-1)


def _bce_rows_fast(logits, target):
    """(sum_d [max(l, 0) - l x + log1p(exp(-|l|))] for each row, 1 + exp(-|l|)), in few passes and ONE exp.

    max(l, 0) = (l + |l|) / 2 reuses the |l| that the exp needs; the log1p term is summed by ``_sum_log``.
    ``bce_with_logits_fast`` makes its gradient from the returned 1 + exp(-|l|). ``target`` may broadcast against
    ``logits`` (the IWAE bound passes logits (m, k, D) and images (m, 1, D)).
    """
    xp = B.get_xp()
    magnitude = xp.abs(logits)
    terms = logits + magnitude
    terms *= 0.5
    terms -= logits * target
    magnitude *= -1.0
    one_plus_e = xp.exp(magnitude)
    one_plus_e += 1.0
    return xp.sum(terms, axis=-1) + _sum_log(one_plus_e), one_plus_e


BLOCK_ROWS = 256  # 784-pixel rows: 800 KB per array; 13% faster than whole 16 MB chunks for IWAE k=1000


def bce_with_logits_per_example_fast(logits, target):
    """``bce_with_logits_per_example`` with fewer and cheaper passes (``_bce_rows_fast``), for the IWAE bound's
    millions of rows. Also takes logits (m, k, D) with images (m, 1, D) that broadcast against them (so the images
    are never copied k times). On the CPU the rows go in blocks of ``BLOCK_ROWS``, so that a block's dozen passes
    find it in cache (each row comes out the same as from one pass over everything); on CuPy all rows go at once.
    """
    if B.plain():
        return _bce_per_example_by_rows(logits, target)
    if not B.is_array(logits):
        logits = B.asarray(logits)
    target = B.asarray(target, dtype=logits.dtype)
    size = None if _on_gpu() else BLOCK_ROWS  # a GPU wants few large passes: one launch for all rows
    pairs = _row_block_pairs(logits, target, size)  # also checks the shapes
    if _on_gpu():
        from . import kernels
        return kernels.bce_rows(*pairs[0])  # one reduction kernel: one pass over the block
    xp = B.get_xp()
    rows = [xp.reshape(_bce_rows_fast(block, block_target)[0], (-1,)) for block, block_target in pairs]
    return xp.reshape(B.concat(rows, axis=0), tuple(logits.shape[:-1]))


def bce_rows_with_grad_fast(logits, target):
    """(the per-row BCE, sigmoid(l) - x): ``bce_with_logits_per_example`` and the gradient of each row's BCE
    w.r.t. its logits, from ONE exp per element (``_bce_rows_fast``'s 1 + e, as ``bce_with_logits_fast`` makes
    its gradient), in the same blocks of rows. For logits (N, D) or (m, k, D) with targets that broadcast against
    them (M2's (N, C, D) enumerated logits against the images (N, 1, D)); the gradient has the logits' shape and
    is not divided by anything: the caller weights each row. Plain mode: the two plain formulas."""
    xp = B.get_xp()
    if B.plain() or _on_gpu():  # a GPU: the rows' reduction kernel, and the gradient as its formula (3 launches)
        sig = (1.0 + xp.tanh(logits / 2)) / 2  # = 1 / (1 + exp(-l)), with no exp that could overflow
        return bce_with_logits_per_example_fast(logits, target), sig - target
    target = B.asarray(target, dtype=logits.dtype)
    rows, grads = [], []
    for block, block_target in _row_block_pairs(logits, target, BLOCK_ROWS):
        values, one_plus_e = _bce_rows_fast(block, block_target)
        grad = 1.0 / one_plus_e  # e = exp(-|l|)
        grad -= 0.5
        grad *= xp.sign(block)
        grad += 0.5  # sigmoid(l) = 1/2 + sign(l) (1 / (1 + e) - 1/2): see bce_with_logits_fast
        grad -= block_target
        rows.append(xp.reshape(values, (-1,)))
        grads.append(xp.reshape(grad, (-1, logits.shape[-1])))
    lead = tuple(logits.shape[:-1])
    return xp.reshape(B.concat(rows, axis=0), lead), xp.reshape(B.concat(grads, axis=0), tuple(logits.shape))


def _bce_per_example_by_rows(logits, target):
    """``bce_with_logits_per_example`` itself for logits (..., D) and targets that broadcast against them: both
    flattened to rows (M, D), the result shaped back to logits.shape[:-1] (the plain-mode path of the twin above)."""
    xp = B.get_xp()
    logits = B.asarray(logits)
    target = xp.broadcast_to(B.asarray(target, dtype=logits.dtype), tuple(logits.shape))
    width = logits.shape[-1]
    rows = bce_with_logits_per_example(xp.reshape(logits, (-1, width)), xp.reshape(target, (-1, width)))
    return xp.reshape(rows, tuple(logits.shape[:-1]))


def _row_block_pairs(logits, target, size):
    """(logits rows, their targets) in blocks of at most ``size`` rows, in order (everything at once for None):
    logits (N, D) with target (N, D) or (1, D); logits (m, k, D) with target (m, k, D) or (m, 1, D), a block then
    being part of one image's k rows, or (for k < size) the k rows of several whole images."""
    def spans(n):  # stops kept within the axis: the array API leaves slices past the end unspecified
        return [(a, min(n, a + (size or n))) for a in range(0, n, size or n)]

    lead, target_lead = tuple(logits.shape[:-1]), tuple(target.shape[:-1])
    same_width = logits.shape[-1] == target.shape[-1]
    if same_width and len(lead) == 1 and target_lead in ((1,), lead):
        return [(logits[a:b, :], target if target_lead == (1,) else target[a:b, :]) for a, b in spans(lead[0])]
    if same_width and len(lead) == 2 and target_lead in ((lead[0], 1), lead):
        if size is None:
            return [(logits, target)]
        if lead[1] < size:  # few rows per image (M2's C = 10 labels): whole images together, (j - i, k, D) blocks
            step = size // lead[1]
            return [(logits[i:j, :, :], target[i:j, :, :]) for i, j in
                    ((i, min(lead[0], i + step)) for i in range(0, lead[0], step))]
        return [(logits[i, a:b, :], target[i, :, :] if target_lead[1] == 1 else target[i, a:b, :])
                for i in range(lead[0]) for a, b in spans(lead[1])]
    raise ValueError(f"bce_with_logits_per_example_fast: expected logits (N, D) with targets (N, D) or (1, D), or "
                     f"logits (m, k, D) with targets (m, k, D) or (m, 1, D); got {tuple(logits.shape)} and "
                     f"{tuple(target.shape)}")


def bce_with_logits_fast(logits, target):
    """``bce_with_logits`` in fewer passes and one exp, or one fused kernel on CuPy.

    The value comes from ``_bce_rows_fast`` (within D * 2^-24 nats per example in float32). The gradient reuses its
    1 + e, e = exp(-|l|): sigmoid(l) = 1 / (1 + e) for l >= 0 and e / (1 + e) = 1 - 1 / (1 + e) for l < 0, which
    is 1/2 + sign(l) (1 / (1 + e) - 1/2) for every l, with no branch and no tanh (a scalar loop in NumPy). Exactly
    0 or 1 in the tails; its absolute error is about one rounding of 1, no more than the subtraction s - x makes.
    """
    if B.plain():
        return bce_with_logits(logits, target)
    logits, target = _pair(logits, target, "bce_with_logits", ("logits", "target"))
    if _on_gpu():
        from . import kernels
        return kernels.bce_with_logits(logits, target)
    xp = B.get_xp()
    n = logits.shape[0]
    rows, one_plus_e = _bce_rows_fast(logits, target)
    value = float(xp.sum(rows)) / n
    grad = 1.0 / one_plus_e
    grad -= 0.5
    grad *= xp.sign(logits)
    grad += 0.5
    grad -= target
    grad *= 1.0 / n
    return value, grad


def gaussian_kl_fast(mu, logvar):
    """``gaussian_kl`` computing exp(logvar) once, or as one fused kernel on CuPy (value then a 0-d array)."""
    mu, logvar = _pair(mu, logvar, "gaussian_kl", ("mu", "logvar"))
    if B.plain():
        return gaussian_kl(mu, logvar)
    if _on_gpu():
        from . import kernels
        return kernels.gaussian_kl(mu, logvar)
    xp = B.get_xp()
    n = mu.shape[0]
    var = xp.exp(logvar)
    value = 0.5 * float(xp.sum(mu * mu + var - 1.0 - logvar)) / n
    return value, mu * (1.0 / n), (var - 1.0) * (0.5 / n)


def iwae_loss_fast(log_w):
    """``iwae_loss`` with the value left on the device on CuPy (a 0-d array, read by ``float``): a training step
    on the importance-weighted objective then never waits for the GPU. Elsewhere exactly ``iwae_loss``."""
    if B.plain() or not _on_gpu():
        return iwae_loss(log_w)
    log_w = _log_weights_2d(log_w, "iwae_loss")
    xp = B.get_xp()
    n, k = log_w.shape
    lse = _logsumexp(log_w)
    return math.log(k) - xp.sum(lse) / n, -xp.exp(log_w - lse) / n


# ------------------------------------------------------------------ what a model's loss returns, in nats
class LossParts:
    """The objective per example: total = recon + beta * kl (kl is 0 for a plain autoencoder), read as floats.

    On a GPU the numbers stay on the device until one is read (reading waits for the GPU to finish the step), so a
    training loop can add them up without a host sync per step: ``values()`` gives them as they are kept.
    """

    __slots__ = ("_values",)

    def __init__(self, total, recon, kl):
        self._values = (total, recon, kl)

    total = property(lambda self: float(self._values[0]))
    recon = property(lambda self: float(self._values[1]))
    kl = property(lambda self: float(self._values[2]))

    def values(self):
        """(total, recon, kl) as kept: floats, or 0-d arrays of the active backend (not yet read from a GPU)."""
        return self._values

    def __eq__(self, other):
        return isinstance(other, LossParts) and (self.total, self.recon, self.kl) == (other.total, other.recon,
                                                                                       other.kl)

    def __repr__(self):
        return f"LossParts(total={self.total!r}, recon={self.recon!r}, kl={self.kl!r})"



def recon_constant(model):
    """What -log p(x|z) adds to the training loss's reconstruction term, in nats per example.

    Bernoulli: 0 (the BCE is -log p(x|z)). Gaussian N(x; mean, I/2): -log p = ||x - mean||^2 + D/2 log(pi), and
    the training loss leaves the constant out (it has no gradient), so add it to report nats on the same footing as
    the IWAE bound.
    """
    return 0.0 if model.likelihood == "bernoulli" else 0.5 * model.input_dim * math.log(math.pi)
