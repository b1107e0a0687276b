"""Time a training step of each model of `tinyvae reproduce cs236` and project the table's training time.

    python benchmarks/bench_cs236.py [--data DIR] [--steps 40] [--repeats 5] [--models vae,gmvae,ssvae,classifier]
                                     [--backend numpy|cupy] [--no-plain]

Each model is built and trained exactly as ``tinyvae.reproduce`` does (its settings, ``fit_iterations``, batch 97,
the training images binarized at every step; the classifier alone steps only its own parameters). A timing is
``--steps`` steps of ``fit_iterations``; the table prints the median of ``--repeats`` timings in ms per step, for
the fast path and for plain mode (``tinyvae.use_plain``: every formula as written, the reference), both measured in
this one process, their ratio, and the training time that the fast path projects for the homework's step counts.
The evaluation (about a minute for the VAE's whole-test-set IWAE bound at m = 1000) is not included.
"""
import argparse
import statistics
import time

import machine
import tinyvae as tv
from tinyvae import reproduce
from tinyvae.gmvae import GMVAE
from tinyvae.optim import Adam
from tinyvae.ssvae import SSVAE, fit_iterations

KINDS = ("vae", "gmvae", "ssvae", "classifier")
ITERATIONS = {"vae": "vae_iterations", "gmvae": "gmvae_iterations", "ssvae": "ssvae_iterations",
              "classifier": "ssvae_iterations"}


def build(kind, data, settings):
    """(model, optimizer or None, labeled images or None) as ``reproduce.run`` makes them for ``kind``."""
    arch = dict(input_dim=data.x_train.shape[1], hidden=settings["hidden"], activation="elu", rng=0)
    if kind in ("vae", "gmvae"):
        extra = {"components": settings["components"]} if kind == "gmvae" else {}
        return (GMVAE if kind == "gmvae" else tv.VAE)(latent_dim=settings["latent"], **arch, **extra), None, None
    model = SSVAE(latent_dim=settings["ssvae_latent"], gen_weight=1.0 if kind == "ssvae" else 0.0,
                  class_weight=settings["class_weight"], **arch)
    labeled = tv.datasets.per_class_subset(data.y_train, settings["per_class"])
    optimizer = Adam(model.classifier.parameters(), lr=settings["lr"]) if kind == "classifier" else None
    return model, optimizer, (data.x_train[labeled], data.y_train[labeled])


def ms_per_step(kind, data, settings, steps, repeats):
    """The median over ``repeats`` of the ms per step of ``steps`` training steps (after two untimed steps)."""
    model, optimizer, labeled = build(kind, data, settings)
    optimizer = optimizer or Adam(model.parameters(), lr=settings["lr"])
    x = tv.asarray(data.x_train)

    def train(n, seed):
        fit_iterations(model, x, n, batch_size=settings["batch_size"], lr=settings["lr"], seed=seed,
                       binarize="dynamic", progress=False, labeled=labeled, optimizer=optimizer)

    train(2, seed=0)
    times = []
    for seed in range(1, repeats + 1):
        tv.backend.synchronize()
        start = time.perf_counter()
        train(steps, seed)
        tv.backend.synchronize()
        times.append((time.perf_counter() - start) / steps)
    return 1e3 * statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    machine.add_data_argument(parser)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default=",".join(KINDS))
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--no-plain", action="store_true", help="skip the plain-mode column (the slow reference)")
    args = parser.parse_args(argv)
    kinds = [k for k in args.models.split(",") if k]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"--models: unknown {unknown}; expected some of {', '.join(KINDS)}")
    tv.use(args.backend)
    print("\n".join(machine.describe()))
    data, settings = tv.datasets.load(args.data, progress=False), reproduce.FULL
    print(f"CS236 training steps on {data.name}, backend {args.backend}, float32, batch {settings['batch_size']}; "
          f"median of {args.repeats} timings of {args.steps} steps each")
    print(f"{'model':<11} {'fast ms/step':>12} {'plain ms/step':>13} {'plain/fast':>10} {'steps':>7} "
          f"{'projected s':>11}")
    total = 0.0
    for kind in kinds:
        fast = ms_per_step(kind, data, settings, args.steps, args.repeats)
        plain = float("nan")
        if not args.no_plain:
            tv.use_plain(True)
            try:
                plain = ms_per_step(kind, data, settings, args.steps, args.repeats)
            finally:
                tv.use_plain(False)
        iterations = settings[ITERATIONS[kind]]
        total += fast * iterations / 1e3
        print(f"{kind:<11} {fast:>12.2f} {plain:>13.2f} {plain / fast:>10.2f} {iterations:>7} "
              f"{fast * iterations / 1e3:>11.0f}")
    print(f"projected training time of these models (fast path): {total:.0f} s = {total / 60:.1f} min, "
          f"without the evaluation")


if __name__ == "__main__":
    main()
