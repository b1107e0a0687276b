"""`tinyvae reproduce cs236`: Stanford CS236 homework 2's table, from scratch (VAE, GMVAE, IWAE, SSVAE).

The homework's setting: binarized MNIST (training images binarized afresh at every batch; test images by one fixed
draw, ``datasets.binarize(x_test, seed=0)``), 784-300-300 ELU MLPs, latent 10, Bernoulli decoder, Adam 1e-3,
batch 97, 20,000 iterations for the VAE and the GMVAE (K = 500 components), 30,000 for the SSVAE (latent 64,
100 labeled training images binarized afresh at every step like the batches, cross-entropy weight 100), whose
classifier alone (generative weight 0) is the baseline.

Which 100 images: ``subsets="cs236"`` (the default of a full run) takes the homework's hand-picked ones
(``datasets.cs236_subset``: its labeled training images and its test subset, 10 of each digit); ``"first"`` (the
default of --quick, whose bundled data lacks some of them) the first 10 of each digit in file order.

The bounds are in nats per image on BINARY digits (-log p(x) of the fixed binarization), measured on
  - the 100-image test subset (the homework's, or the first 10 of each digit): the negative ELBO
    averaged over 100 draws of eps, the IWAE bound at m = 1, 10, 100, 1000 averaged over max(100 // m, 1) draws;
  - the whole test set: one draw of eps for the ELBO, and (the VAE's, the graded row) one for the IWAE bound at
    m = ``full_iwae_m``.
The bands are graded on the subset (the homework's); accuracies are on the whole test set (grey levels).
Seeds: training uses --seed (default 0) for the shuffles, the binarizations and the noise; the test binarization
uses seed 0 always; the evaluation noise uses the seeds 0, 1, ... of the repeats.

Host code besides the models: the table, results.json and the figures (tinyvae.plots).
"""
import json
import time
from dataclasses import replace
from pathlib import Path

from . import backend as B
from . import checkpoint, datasets
from .errors import InputError
from .files import atomic_write
from .gmvae import GMVAE
from .iwae import iwae_bound
from .models import VAE
from .optim import Adam
from .ssvae import SSVAE, fit_iterations
from .train import evaluate

# (key, what, target, half-width, unit): the homework's grading bands
BANDS = (
    ("vae_nelbo", "VAE negative ELBO", 100.0, 2.0, "nats"),
    ("gmvae_nelbo", "GMVAE negative ELBO", 97.0, 3.0, "nats"),
    ("vae_niwae_1000", "VAE negative IWAE, m = 1000", 95.0, 2.8, "nats"),
    ("ssvae_accuracy", "SSVAE test accuracy (gen. weight 1)", 92.0, 3.5, "%"),
    ("classifier_accuracy", "classifier alone (gen. weight 0)", 72.5, 2.5, "%"),
)
FULL = dict(vae_iterations=20000, gmvae_iterations=20000, ssvae_iterations=30000, batch_size=97, lr=1e-3,
            hidden=(300, 300), latent=10, ssvae_latent=64, components=500, class_weight=100.0, iwae_m=(1, 10, 100, 1000),
            nelbo_repeats=100, iwae_draws=100, full_iwae_m=1000, per_class=10)
# --quick (CI, the bundled data): the same models and evaluation, far fewer steps, and a cheap full-test IWAE
QUICK = dict(FULL, vae_iterations=100, gmvae_iterations=100, ssvae_iterations=25, nelbo_repeats=5, iwae_draws=5,
             full_iwae_m=5)


def in_band(value, target, half):
    return abs(value - target) <= half


def _repeat(fn, repeats):
    """The mean of fn(seed) over the seeds 0 .. repeats - 1."""
    return sum(fn(seed) for seed in range(repeats)) / repeats


def evaluate_bounds(model, x_subset, x_full, settings, full_iwae=True):
    """{name: nats} of a VAE or GMVAE on the binarized test subset and the whole binarized test set (its IWAE bound
    at m = ``settings["full_iwae_m"]`` only with ``full_iwae``)."""
    out = {"nelbo_subset": _repeat(lambda s: evaluate(model, x_subset, seed=s)["loss"], settings["nelbo_repeats"]),
           "nelbo_full": evaluate(model, x_full, seed=0)["loss"]}
    for m in settings["iwae_m"]:
        draws = max(settings["iwae_draws"] // m, 1)
        out[f"niwae_{m}_subset"] = _repeat(lambda s: iwae_bound(model, x_subset, k=m, seed=s), draws)
    if full_iwae:  # the graded row's full-test-set figure (the VAE's): 10 million decoder passes at m = 1000
        out[f"niwae_{settings['full_iwae_m']}_full"] = iwae_bound(model, x_full, k=settings["full_iwae_m"], seed=0)
    return out


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    B.synchronize()
    return result, time.perf_counter() - start


def _train(model, x, iterations, settings, seed, binarize, progress, labeled=None, optimizer=None):
    return _timed(lambda: fit_iterations(model, x, iterations, batch_size=settings["batch_size"], lr=settings["lr"],
                                         seed=seed, binarize=binarize, progress=progress, labeled=labeled,
                                         optimizer=optimizer))


SUBSETS = ("cs236", "first")
SUBSET_NAMES = {"cs236": "the homework's hand-picked test images (and its 100 labeled training images)",
                "first": "the first 10 test images of each digit (and the first 10 training images of each as the "
                         "labeled ones)"}


BINARIZE = ("dynamic", "static", "none")


def _data(dataset, settings, subsets, binarize):
    """(data, test subset indices, labeled training indices, the binarized test set) for the run; with
    ``binarize == "static"`` the training images (labeled ones included) are binarized once, seed 1."""
    data = datasets.load(dataset, progress=False)
    if binarize == "static":
        data = replace(data, x_train=datasets.binarize(data.x_train, seed=1))
    if subsets == "cs236":
        subset, labeled = datasets.cs236_subset(data.y_test, "test"), datasets.cs236_subset(data.y_train, "train")
    else:
        subset = datasets.per_class_subset(data.y_test, settings["per_class"])
        labeled = datasets.per_class_subset(data.y_train, settings["per_class"])
    return data, subset, labeled, datasets.binarize(data.x_test, seed=0)


KINDS = ("vae", "gmvae", "ssvae", "classifier")


def run(dataset="mnist-small", quick=False, out="cs236", seed=0, binarize="dynamic", progress=True, figures=True,
        log=print, kinds=KINDS, full_iwae_m=None, subsets=None):
    """Train the models (``kinds``: all four by default), evaluate them, write results.json, checkpoints and figures
    into ``out``; returns the results dict (its "rows" hold each band's figure and verdict). results.json and the
    checkpoints are written after each model, so a run stopped early keeps what finished. ``full_iwae_m`` overrides
    the number of importance samples of the whole test set's IWAE bound (1000; a CPU pays k decoder passes per
    image). ``subsets``: "cs236" or "first" (the module docstring; None: "first" with ``quick``, else "cs236").
    ``binarize``: the training images drawn afresh at every step ("dynamic", the homework's), once ("static",
    seed 1), or left grey ("none"); the test images are binarized once (seed 0) whatever it is."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise InputError(f"reproduce.run: unknown models {unknown}: expected some of {', '.join(KINDS)}")
    if binarize not in BINARIZE:
        raise InputError(f"reproduce.run: binarize must be one of {', '.join(BINARIZE)}, got {binarize!r}")
    subsets = subsets or ("first" if quick else "cs236")
    if subsets not in SUBSETS:
        raise InputError(f"reproduce.run: subsets must be one of {', '.join(SUBSETS)}, got {subsets!r}")
    settings = dict(QUICK if quick else FULL, **({} if full_iwae_m is None else {"full_iwae_m": int(full_iwae_m)}))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data, subset, labeled, test_bin = _data(dataset, settings, subsets, binarize)
    log(f"CS236 homework 2 on {data.name}: {data.x_train.shape[0]} training images, {data.x_test.shape[0]} test "
        f"images; backend {B.backend_name()}; {'QUICK mode' if quick else 'the full setting'}")
    results = {"dataset": data.name, "quick": quick, "seed": seed, "binarize": binarize, "backend": B.backend_name(),
               "subsets": subsets,
               "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
               "test_subset_indices": [int(i) for i in subset], "labeled_indices": [int(i) for i in labeled],
               "models": {}}
    run = dict(data=data, x_train=B.asarray(data.x_train), x_sub=B.asarray(test_bin[subset]),
               x_full=B.asarray(test_bin), labeled=labeled, settings=settings, seed=seed,
               binarize="dynamic" if binarize == "dynamic" else "none",  # static: data binarized once already
               progress=progress)
    models = {}
    for kind in [k for k in KINDS if k in kinds]:
        train = _train_ssvae if kind in ("ssvae", "classifier") else _train_bounded
        models[kind], results["models"][kind] = train(kind, run, log)
        checkpoint.save(models[kind], out / f"{kind}.npz", dataset=data.name, seed=seed,
                        train={"dataset": data.name, "binarize": binarize})  # what tinyvae evaluate tests it on
        _write(out, results, settings, start)
    if figures:
        results["figures"] = _figures(models, out, seed)
        _write(out, results, settings, start)
    log(table(results))
    return results


def _write(out, results, settings, start):
    results["rows"] = _rows(results["models"], settings)
    results["seconds"] = time.perf_counter() - start
    with atomic_write(out / "results.json", "w") as f:
        json.dump(results, f, indent=2)


def build(kind, settings, input_dim, seed):
    """(model, optimizer) for ``kind`` (one of KINDS) as the table trains it: the homework's 784-300-300 ELU networks
    from ``seed``; the optimizer is None (fit_iterations' Adam over every parameter) except for the classifier
    alone: at generative weight 0 the generative networks get no gradient and Adam would leave them as they are,
    so it steps only the classifier's parameters (the same training, without updating 1.1 million zeros a step)."""
    arch = dict(input_dim=input_dim, hidden=settings["hidden"], activation="elu", rng=seed)
    if kind in ("vae", "gmvae"):
        extra = {"components": settings["components"]} if kind == "gmvae" else {}
        return (GMVAE if kind == "gmvae" else VAE)(latent_dim=settings["latent"], **arch, **extra), None
    model = SSVAE(latent_dim=settings["ssvae_latent"], gen_weight=1.0 if kind == "ssvae" else 0.0,
                  class_weight=settings["class_weight"], **arch)
    return model, (Adam(model.classifier.parameters(), lr=settings["lr"]) if kind == "classifier" else None)


def iterations(kind, settings):
    """How many training steps ``kind`` takes: the SSVAE's count for the classifier alone too."""
    return settings["ssvae_iterations" if kind == "classifier" else f"{kind}_iterations"]


def _train_bounded(kind, run, log):
    """Train the VAE or the GMVAE, then bound -log p(x) on the test images: (model, its results)."""
    settings = run["settings"]
    model, _ = build(kind, settings, run["data"].x_train.shape[1], run["seed"])
    history, seconds = _train(model, run["x_train"], iterations(kind, settings), settings, run["seed"],
                              run["binarize"], run["progress"])
    bounds, eval_seconds = _timed(lambda: evaluate_bounds(model, run["x_sub"], run["x_full"], settings,
                                                          full_iwae=kind == "vae"))
    log(f"{kind}: trained {iterations(kind, settings)} steps in {seconds:.0f} s; negative ELBO "
        f"{bounds['nelbo_subset']:.2f} (subset), {bounds['nelbo_full']:.2f} (full test set); IWAE "
        + ", ".join(f"m={m}: {bounds[f'niwae_{m}_subset']:.2f}" for m in settings["iwae_m"])
        + f" (subset); evaluated in {eval_seconds:.0f} s")
    return model, {"train_seconds": seconds, "eval_seconds": eval_seconds, **bounds, "history": history.to_dict()}


def _train_ssvae(kind, run, log):
    """Train M2 (kind "ssvae", generative weight 1) or its classifier alone ("classifier", weight 0), then measure
    the test accuracy: (model, its results)."""
    settings, data = run["settings"], run["data"]
    model, optimizer = build(kind, settings, data.x_train.shape[1], run["seed"])
    labeled = (data.x_train[run["labeled"]], data.y_train[run["labeled"]])
    history, seconds = _train(model, run["x_train"], iterations(kind, settings), settings, run["seed"],
                              run["binarize"], run["progress"], labeled=labeled, optimizer=optimizer)
    accuracy = 100.0 * model.accuracy(B.asarray(data.x_test), B.asarray(data.y_test))
    log(f"{kind} (gen. weight {model.gen_weight:g}): trained {iterations(kind, settings)} steps in {seconds:.0f} s; "
        f"test accuracy {accuracy:.2f}%")
    return model, {"train_seconds": seconds, "accuracy": accuracy, "history": history.to_dict()}


def _rows(m, settings):
    """One row per band: the graded figure (the subset's), the full test set's beside it, and the verdict (None
    for a model not run)."""
    full_m = settings["full_iwae_m"]
    get = lambda kind, key: m.get(kind, {}).get(key)  # noqa: E731
    measured = {"vae_nelbo": (get("vae", "nelbo_subset"), get("vae", "nelbo_full")),
                "gmvae_nelbo": (get("gmvae", "nelbo_subset"), get("gmvae", "nelbo_full")),
                "vae_niwae_1000": (get("vae", "niwae_1000_subset"), get("vae", f"niwae_{full_m}_full")),
                "ssvae_accuracy": (get("ssvae", "accuracy"), get("ssvae", "accuracy")),
                "classifier_accuracy": (get("classifier", "accuracy"), get("classifier", "accuracy"))}
    rows = []
    for key, what, target, half, unit in BANDS:
        graded, full = measured[key]
        rows.append({"key": key, "figure": what, "unit": unit, "value": graded, "full_test_set": full,
                     "target": target, "half_width": half,
                     "pass": None if graded is None else in_band(graded, target, half)})
    rows[2]["full_test_set_m"] = full_m
    return rows


def table(results):
    """The table beside the bands, with pass/miss per row, and the units line."""
    rows = [("figure", "100-image subset", "full test set", "band", "result")]
    for r in results["rows"]:
        fmt = (lambda v: "-" if v is None else f"{v:.2f}" + ("%" if r["unit"] == "%" else ""))
        full = fmt(r["full_test_set"]) + (f" (m={r['full_test_set_m']})" if "full_test_set_m" in r else "")
        band = (f"{r['target'] - r['half_width']:g}-{r['target'] + r['half_width']:g}%" if r["key"] ==
                "classifier_accuracy" else f"{r['target']:g} +- {r['half_width']:g}{'%' if r['unit'] == '%' else ''}")
        rows.append((r["figure"], fmt(r["value"]) if r["unit"] != "%" else "-", full, band,
                     {True: "pass", False: "MISS", None: "not run"}[r["pass"]]))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    gmvae = results["models"].get("gmvae", {})
    extra = ([f"GMVAE negative IWAE, m = 1000 (subset): {gmvae['niwae_1000_subset']:.2f}"] if gmvae else []) + [
             "units: nats per image, -log p(x) of BINARY digits (the test set binarized once, seed 0); accuracies on "
             "the grey-level test images. The bounds' bands are graded on the 100-image subset: "
             + SUBSET_NAMES[results.get("subsets", "cs236")] + ".",
             f"whole run: {results['seconds']:.0f} s on backend {results['backend']}"
             + (" (QUICK mode: far fewer steps, the bands are not expected)" if results["quick"] else "")]
    return "\n".join(lines + extra)


def _figures(models, out, seed):
    """VAE samples, GMVAE samples and its component means decoded, SSVAE samples one row per digit: the names of
    the PNGs written (those of the models that were run)."""
    from . import plots

    def grid(kind, images, title):
        return lambda path: plots.image_grid(images(models[kind]), ncols=10, path=path, title=title)

    figures = (
        ("vae", "vae_samples.png", grid("vae", lambda m: m.sample(100, rng=seed), "VAE: 100 samples from N(0, I)")),
        ("gmvae", "gmvae_samples.png", grid("gmvae", lambda m: m.sample(100, rng=seed),
                                            "GMVAE: 100 samples from the mixture prior")),
        ("gmvae", "gmvae_component_means.png", grid("gmvae", lambda m: m.component_means()[:100, :],
                                                    "GMVAE: the first 100 components' means, decoded")),
        ("ssvae", "ssvae_samples.png", lambda path: plots.conditional_samples(models["ssvae"], per_digit=10,
                                                                              rng=seed, path=path)))
    written = []
    for kind, name, draw in figures:
        if kind in models:
            draw(out / name).clear()
            written.append(name)
    return written
