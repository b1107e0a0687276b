"""Training and evaluation: ``fit`` (minibatch training with a History), ``evaluate``, ``iwae_bound``, active units.

Every figure is in nats per example, as the losses report them. Randomness is reproducible without saving any
generator state: epoch e shuffles the data and draws the model's noise (the VAE's eps, the denoising autoencoder's
corruption) from ``Generator((seed, e))``, so ``fit(..., start_epoch=k)`` after a checkpoint replays exactly the
batches and noise of an uninterrupted run.

    history = fit(model, data.x_train, epochs=10, x_val=data.x_test)
    nll = iwae_bound(model, data.x_test[:1000], k=1000)      # an upper bound on -log p(x), in nats
"""
import math
import time

from tqdm.auto import tqdm

from . import backend as B
from .checks import model_data, model_labels, need_vae, positive_int
from .optim import Adam, check_holds, clip_grad_norm



class History:
    """Per-epoch figures of a training run, one list per key, all the same length (val_* empty without x_val).

    ``epochs`` holds the number of epochs completed after each entry (1, 2, ...; continuing from ``start_epoch``
    when training resumes); ``epoch_time`` the seconds spent training in each epoch (validation not included).
    ``to_dict()`` gives plain ints and floats for JSON; ``History.from_dict`` reads it back.
    """

    KEYS = ("train_loss", "train_recon", "train_kl", "val_loss", "val_recon", "val_kl", "epoch_time")

    def __init__(self):
        self.epochs = []
        for key in self.KEYS:
            setattr(self, key, [])

    def to_dict(self):
        return {"epochs": [int(e) for e in self.epochs], **{k: [float(v) for v in getattr(self, k)] for k in self.KEYS}}

    @classmethod
    def from_dict(cls, d):
        unknown = sorted(set(d) - {"epochs", *cls.KEYS})
        if unknown:
            raise ValueError(f"History.from_dict: unknown keys {unknown}; expected 'epochs' and {list(cls.KEYS)}")
        history = cls()
        history.epochs = [int(e) for e in d.get("epochs", [])]
        for key in cls.KEYS:
            values = [float(v) for v in d.get(key, [])]
            if values and len(values) != len(history.epochs):
                raise ValueError(f"History.from_dict: {key!r} has {len(values)} entries but 'epochs' has "
                                 f"{len(history.epochs)}")
            setattr(history, key, values)
        return history

    def __len__(self):
        return len(self.epochs)

    def __getitem__(self, key):
        if key != "epochs" and key not in self.KEYS:
            raise KeyError(f"History has no {key!r}: expected 'epochs' or one of {', '.join(self.KEYS)}")
        return getattr(self, key)

    def __repr__(self):
        if not self.epochs:
            return "History(epochs=0)"
        last = f"train_loss={self.train_loss[-1]:.4f}"
        if self.val_loss:
            last += f", val_loss={self.val_loss[-1]:.4f}"
        return f"History(epochs={self.epochs[-1]}, {last})"


def _model_call(method, x, y, **kwargs):
    """``method(x, **kwargs)``, with ``y=labels`` added for a model that needs labels (y is not None)."""
    return method(x, **kwargs) if y is None else method(x, y=y, **kwargs)


class _Run:
    """What one ``fit`` call trains with: the data on the device, the optimizer, the options, the progress bar."""

    def __init__(self, model, x, y, optimizer, batch_size, clip, seed, bar, check_every):
        self.model, self.x, self.y, self.optimizer = model, x, y, optimizer
        self.batch_size, self.clip, self.seed, self.bar = batch_size, clip, seed, bar
        self.n = x.shape[0]
        self.steps = math.ceil(self.n / batch_size)
        self.params = model.parameters()
        self.check_every = check_every
        self.saved = None  # the weights and optimizer state at the last check (deferred checks only)

    def save(self):
        """Keep the weights and the optimizer state: a deferred check that finds a non-finite loss returns here."""
        if self.check_every > 1:
            self.saved = ([B.copy(p.data) for p in self.params], self.optimizer.state_dict())

    def restore(self):
        for p, data in zip(self.params, self.saved[0]):
            p.data[...] = data
        self.optimizer.load_state_dict(self.saved[1])


def _read_losses(run, pending, sums, epoch, first_step):
    """Add the pending (batch size, (total, recon, kl)) to ``sums`` with ONE read from the device; stop on a
    non-finite loss, naming its epoch and step (``first_step`` is the 0-based step of ``pending[0]``)."""
    values = [v for _, parts in pending for v in parts]
    if any(B.is_array(v) for v in values):  # 0-d device arrays: stack them and read them in one transfer
        xp = B.get_xp()
        values = B.to_numpy(xp.stack([v if B.is_array(v) else B.asarray(v, dtype="float64") for v in values]))
        values = [float(v) for v in values]
    for i, (m, _) in enumerate(pending):
        total, recon, kl = values[3 * i:3 * i + 3]
        if not math.isfinite(total):
            if run.check_every > 1:
                run.restore()
            raise FloatingPointError(
                f"fit: the loss became {total} at epoch {epoch + 1}, step {first_step + i + 1} of {run.steps}; "
                "try a smaller lr, gradient clipping (clip=...), or check the data for NaN/Inf"
                + (f" (weights restored to step {first_step} of that epoch: checks run every {run.check_every} "
                   "steps)" if run.check_every > 1 else ""))
        sums[0], sums[1], sums[2] = sums[0] + m * total, sums[1] + m * recon, sums[2] + m * kl
    pending.clear()


def train_epoch(run, epoch, end):
    """One epoch of minibatch steps; returns the (loss, recon, kl) sums over its examples, as floats.

    Each step: zero the gradients, ``model.loss`` on the batch, ``model.backward()``, clip if asked,
    ``optimizer.step()``. The losses are read every ``run.check_every`` steps: with 1 (the CPU), before each
    update, so a non-finite loss stops training before it touches the weights; with more (a GPU, where each read
    waits for the device), after the updates, and a non-finite loss puts back the weights saved at the last check.
    """
    xp = B.get_xp()
    model, n, size = run.model, run.n, run.batch_size
    gen = B.Generator((run.seed, epoch))
    perm = gen.permutation(n)
    sums, pending, first = [0.0, 0.0, 0.0], [], 0
    run.bar.set_description(f"epoch {epoch + 1}/{end}", refresh=False)
    run.save()
    for step in range(run.steps):
        idx = perm[step * size:min(n, (step + 1) * size)]
        xb = xp.take(run.x, idx, axis=0)
        yb = None if run.y is None else xp.take(run.y, idx, axis=0)
        run.optimizer.zero_grad()
        parts = _model_call(model.loss, xb, yb, rng=gen)
        pending.append((xb.shape[0], parts.values()))
        if run.check_every == 1:
            _read_losses(run, pending, sums, epoch, step)
        model.backward()
        if run.clip is not None:
            clip_grad_norm(run.params, run.clip)
        run.optimizer.step()
        run.bar.update(1)
        if pending and ((step + 1) % run.check_every == 0 or step + 1 == run.steps):
            _read_losses(run, pending, sums, epoch, first)
            first = step + 1
            run.save()
        if not pending:
            run.bar.set_postfix(loss=f"{sums[0] / min(n, (step + 1) * size):.3f}", refresh=False)
    return sums


def record_epoch(run, history, epoch, sums, seconds, x_val, y_val):
    """Append one epoch's figures to ``history``: the train means, the time, and ``evaluate`` on x_val if given."""
    history.epoch_time.append(seconds)
    history.epochs.append(epoch + 1)
    for key, total in zip(("train_loss", "train_recon", "train_kl"), sums):
        getattr(history, key).append(total / run.n)
    postfix = {"loss": f"{history.train_loss[-1]:.3f}"}
    if x_val is not None:
        val = evaluate(run.model, x_val, seed=run.seed, labels=y_val)
        for key in ("loss", "recon", "kl"):
            getattr(history, "val_" + key).append(val[key])
        postfix["val"] = f"{val['loss']:.3f}"
    run.bar.set_postfix(postfix)


def history_and_start(history, start_epoch, cls, who):
    """(history, start_epoch) checked: a new ``cls()`` if None, and start_epoch defaulting to ``len(history)``."""
    if history is None:
        history = cls()
    elif not isinstance(history, cls):
        raise TypeError(f"{who}: history must be a {cls.__module__}.{cls.__name__} ({cls.__name__}.from_dict(d) "
                        f"reads a saved one), got {type(history).__name__}")
    start_epoch = len(history) if start_epoch is None else positive_int(start_epoch, f"{who}: start_epoch", 0)
    return history, start_epoch


def _checked_fit_args(model, x_train, epochs, batch_size, optimizer, x_val, lr, kl_warmup, clip, start_epoch,
                      history, y_train, y_val):
    """Every argument of ``fit`` checked and converted: (x, y, x_val, y_val, optimizer, start_epoch, history)."""
    positive_int(epochs, "fit: epochs", 0)
    positive_int(batch_size, "fit: batch_size")
    positive_int(kl_warmup, "fit: kl_warmup", 0)
    if clip is not None and not clip > 0:
        raise ValueError(f"fit: clip must be a positive number or None, got {clip!r}")
    history, start_epoch = history_and_start(history, start_epoch, History, "fit")
    x = model_data(model, x_train, "fit: x_train")
    y = model_labels(model, y_train, x.shape[0], "fit: y_train")
    if x_val is not None:
        x_val = model_data(model, x_val, "fit: x_val")
        y_val = model_labels(model, y_val, x_val.shape[0], "fit: y_val")
    if optimizer is None:
        optimizer = Adam(model.parameters(), lr=lr)
    else:
        check_holds(optimizer, model, "fit", "build it with Adam(model.parameters())")
    return x, y, x_val, y_val, optimizer, start_epoch, history


def fit(model, x_train, epochs, batch_size=128, optimizer=None, x_val=None, seed=0, progress=True, lr=1e-3,
        kl_warmup=0, clip=None, start_epoch=None, history=None, callback=None, y_train=None, y_val=None,
        check_every=None):
    """Train ``model`` for ``epochs`` more epochs of minibatch steps; returns the History (extended in place if given).

    Each step: ``optimizer.zero_grad(); model.loss(xb, rng=gen); model.backward(); [clip]; optimizer.step()``
    (the optimizer holds exactly the model's parameters, so its zero_grad is the model's, minus a tree walk).

    - ``x_train``, ``x_val``: (N, D) float arrays, NumPy or the active backend's; moved to the device once.
    - ``y_train``, ``y_val``: labels (N,), for a model with ``needs_labels = True`` (a conditional VAE), which is
      then called as ``model.loss(xb, y=yb, rng=gen)``; other models ignore them.
    - ``optimizer``: defaults to ``Adam(model.parameters(), lr)``; ``lr`` is ignored when one is given.
      To checkpoint from a ``callback``, create the optimizer yourself so the callback can save it.
    - ``seed``: epoch e uses ``Generator((seed, e))`` for the shuffle and the model's noise.
    - ``start_epoch``: the number of epochs already trained (default: ``len(history)`` if a history is given,
      else 0). Epochs ``start_epoch .. start_epoch + epochs - 1`` run, so resuming is exact.
    - ``kl_warmup``: for a VAE, beta rises linearly to the model's beta over that many epochs
      (beta_e = beta * min(1, (e + 1) / kl_warmup)); the model's beta is restored afterwards, also on errors.
      The train_* figures are those optimized (with beta_e); val_* figures, and a callback, see the model's beta.
    - ``clip``: the largest joint L2 norm of the gradients (``clip_grad_norm``), or None for no clipping.
    - ``callback(epoch, history)`` runs after each epoch, ``epoch`` counted from 1 as in ``history.epochs``.
    - ``check_every``: how many steps between reads of the losses (None: 1 on the CPU, where a read is free; 50 on
      CuPy, where each read waits for the GPU and costs about as much as a kernel launch).

    Train figures are averaged over the epoch's minibatches weighted by their size (a running average of a
    changing model); val figures come from ``evaluate`` (eval mode, a fixed noise seed) after the epoch.
    A NaN or infinite loss stops training with FloatingPointError naming the epoch and step. With
    ``check_every=1`` it stops before that step's update, so the weights stay finite; with more, the updates of up
    to ``check_every - 1`` steps have already run, and the weights and optimizer state saved at the last check
    (the last multiple of ``check_every`` steps, or the start of the epoch) are put back, so they are finite too. The model trains in training mode and is left in it. One progress bar
    (``tqdm.auto``) covers the whole run.
    """
    x, y, x_val, y_val, optimizer, start_epoch, history = _checked_fit_args(
        model, x_train, epochs, batch_size, optimizer, x_val, lr, kl_warmup, clip, start_epoch, history, y_train,
        y_val)
    if check_every is None:
        check_every = 50 if B.backend_name() == "cupy" else 1
    positive_int(check_every, "fit: check_every")
    warm = kl_warmup > 0 and hasattr(model, "beta")
    target_beta = model.beta if warm else None
    end = start_epoch + epochs
    steps = math.ceil(x.shape[0] / batch_size)
    model.train()
    with tqdm(total=steps * epochs, desc=f"epoch {start_epoch + 1}/{end}", unit="batch", disable=not progress,
              leave=True, dynamic_ncols=True) as bar:
        run = _Run(model, x, y, optimizer, batch_size, clip, seed, bar, check_every)
        try:
            for epoch in range(start_epoch, end):
                if warm:
                    model.beta = target_beta * min(1.0, (epoch + 1) / kl_warmup)
                start = time.perf_counter()
                sums = train_epoch(run, epoch, end)
                B.synchronize()
                seconds = time.perf_counter() - start
                if warm:  # the model's own beta between epochs: for validation, and for a callback that saves it
                    model.beta = target_beta
                record_epoch(run, history, epoch, sums, seconds, x_val, y_val)
                if callback is not None:
                    callback(epoch + 1, history)
        finally:
            if warm:
                model.beta = target_beta
            model.train()
    return history


def _chunks(n, size):
    for start in range(0, n, size):
        yield start, min(n, start + size)


def evaluate(model, x, batch_size=1000, seed=0, labels=None):
    """Mean per-example {"loss", "recon", "kl"} over the whole of ``x`` (floats, in nats), in chunks.

    The model is in eval mode meanwhile (no input corruption) and back in its previous mode afterwards. For a VAE,
    one z per example is drawn from ``Generator(seed)``, so "loss" is the one-sample estimate of the negative ELBO
    (recon + beta * KL, the KL term exact): the same seed gives the same figure. ``labels`` (N,) are passed on as
    ``model.loss_per_example(x, y=labels, ...)`` to a model with ``needs_labels = True`` (others ignore them).
    """
    xp = B.get_xp()
    positive_int(batch_size, "evaluate: batch_size")
    x = model_data(model, x, "evaluate: x")
    y = model_labels(model, labels, x.shape[0], "evaluate: labels")
    gen = B.Generator(seed)
    sums = {"loss": [], "recon": [], "kl": []}
    was_training = model.training
    model.eval()
    try:
        for a, b in _chunks(x.shape[0], batch_size):
            parts = _model_call(model.loss_per_example, x[a:b, :], None if y is None else y[a:b], rng=gen)
            for key in sums:
                sums[key].append(xp.sum(B.astype(parts[key], "float64")))  # kept on the device, read once below
    finally:
        model.train(was_training)
    return {key: float(xp.sum(xp.stack(values))) / x.shape[0] for key, values in sums.items()}


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
    and log p(x|z) = ``model.log_likelihood`` (the log weights are ``model.log_weights``, the same code the IWAE
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
        for a, b in _chunks(n, per_chunk):
            xc = x[a:b, :]
            mu, logvar = _model_call(model.encode, xc, None if y is None else y[a:b])
            run_max, run_sum = B.full((b - a,), -math.inf, model.dtype), B.zeros((b - a,), model.dtype)
            for s, t in _chunks(k, k_chunk):
                log_w = model.log_weights(xc, mu, logvar, _iwae_noise(model, a, b, s, t, k, eps, gen))
                run_max, run_sum = _logsumexp_update(run_max, run_sum, log_w)
            bounds = xp.log(run_sum) + run_max - math.log(k)
            total = total - B.astype(xp.sum(bounds), "float64")  # summed on the device, read once
    finally:
        model.train(was_training)
    return float(total) / n


def latent_variances(model, x, batch_size=1000, labels=None):
    """Var_x E_q[z|x] = Var_x mu(x) for each latent dimension: an array (K,) on the active backend.

    The variance is over the examples of ``x`` (dividing by N), as in Burda et al.'s "active units". ``labels``
    (N,): for a conditional model, whose encoder also reads them.
    """
    need_vae(model, "latent_variances")
    xp = B.get_xp()
    positive_int(batch_size, "latent_variances: batch_size")
    x = model_data(model, x, "latent_variances: x")
    y = model_labels(model, labels, x.shape[0], "latent_variances: labels")
    mu = B.zeros((x.shape[0], model.latent_dim), model.dtype)
    for a, b in _chunks(x.shape[0], batch_size):
        mu[a:b, :] = _model_call(model.encode, x[a:b, :], None if y is None else y[a:b])[0]
    return xp.var(mu, axis=0)


def active_units(model, x, threshold=0.01, batch_size=1000, labels=None):
    """How many latent dimensions the VAE uses: those whose Var_x mu(x) exceeds ``threshold`` (Burda et al.: 0.01).

    An inactive unit has mu(x) (nearly) the same for every x: its posterior has collapsed onto the prior.
    ``latent_variances`` gives the per-dimension variances themselves.
    """
    return int(B.get_xp().count_nonzero(latent_variances(model, x, batch_size, labels) > threshold))
