"""Time a training step of each model of `tinyvae reproduce cs236` and project the table's training time.

    python benchmarks/bench_cs236.py [--data DIR] [--steps 40] [--repeats 5] [--models vae,gmvae,ssvae,classifier]
                                     [--backend numpy|cupy] [--no-plain] [--no-torch]

Each model is built and trained as ``tinyvae.reproduce`` does (``reproduce.build``, ``fit_iterations``, batch 97,
the training images binarized at every step; the classifier alone steps only its own parameters). A timing is
``--steps`` steps; the table prints the median of ``--repeats`` timings in ms per step for
  - tinyvae's fast path;
  - plain mode (``tinyvae.use_plain``: every formula as written, the reference);
  - the same model in PyTorch (benchmarks/torch_cs236.py: autograd, torch.optim.Adam, the same batches drawn and
    binarized with torch), on the CPU, or on CUDA beside ``--backend cupy``, when torch is installed
    (pip install -e ".[bench]");
all measured in this one process, with their ratios and the training time each projects for the homework's step
counts. The evaluation (about a minute for the VAE's whole-test-set IWAE bound at m = 1000) is not included.
"""
import argparse

import machine
import tinyvae as tv
from bench_step import median_ms
from tinyvae import reproduce
from tinyvae.optim import Adam
from tinyvae.ssvae import fit_iterations


def labeled_images(data, settings):
    """The labeled training images and labels of the SSVAE and the classifier alone: the first 10 of each digit
    (reproduce's hand-picked ones are not all in the bundled data; which images does not change a step's time)."""
    labeled = tv.datasets.per_class_subset(data.y_train, settings["per_class"])
    return data.x_train[labeled], data.y_train[labeled]


def ms_per_step(train, steps, repeats, sync=None):
    """The median over ``repeats`` timings of ``train(steps)`` (one untimed first), in ms per step."""
    return median_ms(lambda: train(steps), repeats, warmup=1, sync=sync) / steps


def tinyvae_ms(kind, data, settings, steps, repeats):
    """ms per step of ``kind`` built (``reproduce.build``) and trained (``fit_iterations``) as the table is."""
    model, optimizer = reproduce.build(kind, settings, data.x_train.shape[1], seed=0)
    optimizer = optimizer or Adam(model.parameters(), lr=settings["lr"])
    labeled = None if kind in ("vae", "gmvae") else labeled_images(data, settings)
    x = tv.asarray(data.x_train)

    def train(n):
        fit_iterations(model, x, n, batch_size=settings["batch_size"], lr=settings["lr"], seed=0,
                       binarize="dynamic", progress=False, labeled=labeled, optimizer=optimizer)

    return ms_per_step(train, steps, repeats)


def torch_ms(kind, data, settings, steps, repeats, device="cpu"):
    """ms per step of the same model in PyTorch (torch_cs236) on ``device`` ("cuda" beside tinyvae on CuPy), its
    batches drawn and binarized as fit_iterations draws them: a fresh shuffle per pass, x ~ Bernoulli(pixels) for
    the batch and the labeled images, all on the device."""
    import torch
    import torch_cs236

    torch.manual_seed(0)
    model, params = torch_cs236.build(kind, settings)
    model.to(device)
    optimizer = torch.optim.Adam(params, lr=settings["lr"])
    x, batch = torch.tensor(data.x_train, device=device), settings["batch_size"]  # copies of the host arrays
    xl, yl = labeled_images(data, settings)
    xl, yl = torch.tensor(xl, device=device), torch.tensor(yl, dtype=torch.int64, device=device)
    per_pass = -(-x.shape[0] // batch)

    def train(n):
        gen = torch.Generator(device=device).manual_seed(0)
        for step in range(n):
            if step % per_pass == 0:
                perm = torch.randperm(x.shape[0], generator=gen, device=device)
            i = step % per_pass
            xb = torch.bernoulli(x[perm[i * batch:(i + 1) * batch]], generator=gen)
            extra = () if kind in ("vae", "gmvae") else (torch.bernoulli(xl, generator=gen), yl)
            optimizer.zero_grad()
            model.loss(xb, *extra).backward()
            optimizer.step()

    return ms_per_step(train, steps, repeats, sync=torch.cuda.synchronize if device == "cuda" else lambda: None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    machine.add_data_argument(parser)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default=",".join(reproduce.KINDS))
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--no-plain", action="store_true", help="skip the plain-mode column (the slow reference)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch column")
    args = parser.parse_args(argv)
    kinds = [k for k in args.models.split(",") if k]
    unknown = sorted(set(kinds) - set(reproduce.KINDS))
    if unknown:
        parser.error(f"--models: unknown {unknown}; expected some of {', '.join(reproduce.KINDS)}")
    tv.use(args.backend)
    device = "cuda" if args.backend == "cupy" else "cpu"  # PyTorch on the same kind of device as tinyvae
    with_torch = not args.no_torch
    if with_torch:
        try:
            import torch
            if device == "cuda" and not torch.cuda.is_available():
                raise ImportError("this torch has no CUDA device")
            print(f"PyTorch {torch.__version__} on {device}, {torch.get_num_threads()} CPU threads")
        except ImportError as err:
            print(f"(no PyTorch column: {err}; pip install -e '.[bench]' brings torch)")
            with_torch = False
    print("\n".join(machine.describe()))
    data, settings = tv.datasets.load(args.data, progress=False), reproduce.FULL
    print(f"CS236 training steps on {data.name}, backend {args.backend}, float32, batch {settings['batch_size']}; "
          f"median of {args.repeats} timings of {args.steps} steps each")
    print(f"{'model':<11} {'fast ms':>8} {'plain ms':>9} {'torch ms':>9} {'plain/fast':>10} {'fast/torch':>10} "
          f"{'steps':>6} {'fast s':>7} {'torch s':>8}")
    totals = {"fast": 0.0, "torch": 0.0}
    nan = float("nan")
    for kind in kinds:
        fast = tinyvae_ms(kind, data, settings, args.steps, args.repeats)
        plain = nan
        if not args.no_plain:
            tv.use_plain(True)
            try:
                plain = tinyvae_ms(kind, data, settings, args.steps, args.repeats)
            finally:
                tv.use_plain(False)
        theirs = torch_ms(kind, data, settings, args.steps, args.repeats, device) if with_torch else nan
        iterations = reproduce.iterations(kind, settings)
        totals["fast"] += fast * iterations / 1e3
        totals["torch"] += theirs * iterations / 1e3
        print(f"{kind:<11} {fast:>8.2f} {plain:>9.2f} {theirs:>9.2f} {plain / fast:>10.2f} {fast / theirs:>10.2f} "
              f"{iterations:>6} {fast * iterations / 1e3:>7.0f} {theirs * iterations / 1e3:>8.0f}")
    print(f"projected training time of these models: tinyvae {totals['fast']:.0f} s = {totals['fast'] / 60:.1f} min"
          + (f", PyTorch {totals['torch']:.0f} s = {totals['torch'] / 60:.1f} min" if with_torch else "")
          + ", without the evaluation")


if __name__ == "__main__":
    main()
