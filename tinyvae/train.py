"""Training and evaluation: ``fit`` (minibatch training with a History), ``evaluate``, active units (the IWAE bound:
``tinyvae.iwae``).

Every figure is in nats per example, as the losses report them. Randomness is reproducible without saving any
generator state: epoch e shuffles the data and draws the model's noise (the VAE's eps, the denoising autoencoder's
corruption) from ``Generator((seed, e))``, so ``fit(..., start_epoch=k)`` after a checkpoint replays exactly the
batches and noise of an uninterrupted run.

    history = fit(model, data.x_train, epochs=10, x_val=data.x_test)
"""
import math
import time

from tqdm.auto import tqdm

from . import backend as B
from .checks import check_labels, model_data, model_labels, need_vae, positive_int
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


def bernoulli_binarize(x, gen):
    """A fresh binarization x_b ~ Bernoulli(x) of pixel intensities x in [0, 1] ("dynamic binarization": a new
    draw at every batch), on the active backend from the generator ``gen``; x, x_b: (N, D) of x's dtype."""
    return B.astype(gen.random(tuple(x.shape), x.dtype) < x, x.dtype)


def model_call(method, x, y, **kwargs):
    """``method(x, **kwargs)``, with ``y=labels`` added for a model that needs labels (y is not None)."""
    return method(x, **kwargs) if y is None else method(x, y=y, **kwargs)


class _Run:
    """What one ``fit`` call trains with: the data on the device, the optimizer, the options, the progress bar."""

    def __init__(self, model, x, y, optimizer, batch_size, clip, seed, bar, check_every, binarize=False):
        self.model, self.x, self.y, self.optimizer, self.binarize = model, x, y, optimizer, binarize
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
        if run.binarize:  # a new Bernoulli draw of the batch's pixels, from the epoch's generator
            xb = bernoulli_binarize(xb, gen)
        yb = None if run.y is None else xp.take(run.y, idx, axis=0)
        run.optimizer.zero_grad()
        parts = model_call(model.loss, xb, yb, rng=gen)
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
        check_every=None, binarize=False):
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
    - ``binarize``: each batch becomes a new Bernoulli draw of its pixels (``bernoulli_binarize``: dynamic
      binarization, the usual setting of binarized-MNIST likelihoods), drawn from the epoch's generator.
    - ``check_every``: how many steps between reads of the losses (None: 1 on the CPU, where a read is free; 50 on
      CuPy, where each read waits for the GPU and costs about as much as a kernel launch).

    Train figures are averaged over the epoch's minibatches weighted by their size (a running average of a
    changing model); val figures come from ``evaluate`` (eval mode, a fixed noise seed) after the epoch.
    A NaN or infinite loss stops training with FloatingPointError naming the epoch and step. With
    ``check_every=1`` it stops before that step's update, so the weights stay finite; with more, the updates of up
    to ``check_every - 1`` steps have already run, and the weights and optimizer state saved at the last check
    (the last multiple of ``check_every`` steps, or the start of the epoch) are put back, so they are finite too.
    The model trains in training mode and is left in it. One progress bar (``tqdm.auto``) covers the whole run.
    """
    x, y, x_val, y_val, optimizer, start_epoch, history = _checked_fit_args(
        model, x_train, epochs, batch_size, optimizer, x_val, lr, kl_warmup, clip, start_epoch, history, y_train,
        y_val)
    if check_every is None:
        check_every = 50 if B.backend_name() == "cupy" else 1
    positive_int(check_every, "fit: check_every")
    labelled = getattr(model, "needs_labels", False) and hasattr(model, "num_classes")
    if labelled:  # every label's range checked once here, so that no step reads labels from the device
        for labels, who in ((y, "fit: y_train"), (y_val, "fit: y_val")):
            if labels is not None:
                check_labels(labels, labels.shape[0], model.num_classes, who)
    warm = kl_warmup > 0 and hasattr(model, "beta")
    target_beta = model.beta if warm else None
    end = start_epoch + epochs
    steps = math.ceil(x.shape[0] / batch_size)
    model.train()
    with tqdm(total=steps * epochs, desc=f"epoch {start_epoch + 1}/{end}", unit="batch", disable=not progress,
              leave=True, dynamic_ncols=True) as bar:
        run = _Run(model, x, y, optimizer, batch_size, clip, seed, bar, check_every, binarize)
        try:
            if labelled:
                model._labels_checked = True
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
            if labelled:
                model._labels_checked = False
            model.train()
    return history


def chunks(n, size):
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
        for a, b in chunks(x.shape[0], batch_size):
            parts = model_call(model.loss_per_example, x[a:b, :], None if y is None else y[a:b], rng=gen)
            for key in sums:
                sums[key].append(xp.sum(B.astype(parts[key], "float64")))  # kept on the device, read once below
    finally:
        model.train(was_training)
    return {key: float(xp.sum(xp.stack(values))) / x.shape[0] for key, values in sums.items()}




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
    for a, b in chunks(x.shape[0], batch_size):
        mu[a:b, :] = model_call(model.encode, x[a:b, :], None if y is None else y[a:b])[0]
    return xp.var(mu, axis=0)


def active_units(model, x, threshold=0.01, batch_size=1000, labels=None):
    """How many latent dimensions the VAE uses: those whose Var_x mu(x) exceeds ``threshold`` (Burda et al.: 0.01).

    An inactive unit has mu(x) (nearly) the same for every x: its posterior has collapsed onto the prior.
    ``latent_variances`` gives the per-dimension variances themselves.
    """
    return int(B.get_xp().count_nonzero(latent_variances(model, x, batch_size, labels) > threshold))
