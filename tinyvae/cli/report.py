"""The test figures that ``train`` and ``evaluate`` print, and the lines that say what they measure."""
from ..datasets import BINARIZED, DATASETS
from ..iwae import iwae_bound
from ..kinds import KINDS
from ..models import recon_constant
from ..train import active_units, evaluate
from .common import table


def units_lines(model, dataset):
    """What the printed figures measure, for the model's likelihood and the data set ``dataset`` (its name, or the
    folder it was read from) that they were measured on; printed under every table of test figures."""
    if model.likelihood == "bernoulli":
        if str(dataset).endswith("ally binarized)"):  # --binarize static or dynamic (cli.common.load_data)
            lines = [f"units: nats per image, -log p(x|z) of a Bernoulli likelihood on BINARY pixels: {dataset}, its "
                     "test images drawn x ~ Bernoulli(grey level) once (seed 0), the setting of binarized-MNIST "
                     "likelihoods."]
        elif str(dataset).endswith(BINARIZED):
            lines = [f"units: nats per image, -log p(x|z) of a Bernoulli likelihood on the pixels of {dataset}, "
                     "thresholded at 0.5 (one fixed binarization: close to, not identical with, the literature's "
                     "binarized-MNIST figures)."]
        else:
            binarized = f"{dataset}{BINARIZED}" if dataset in DATASETS else f"mnist{BINARIZED}"
            lines = [f"units: nats per image, -log p(x|z) of a Bernoulli likelihood on the grey-level pixels of "
                     f"{dataset}: these figures",
                     f"are not comparable with binarized-MNIST results in the literature: use --dataset {binarized} "
                     "for that."]
        return lines + ([KINDS[model.kind].note] if KINDS[model.kind].note else [])
    return [f"units: nats per image, -log N(x; mean, I/2): the squared error plus D/2 log(pi) = "
            f"{recon_constant(model):.2f} nats (D = {model.input_dim}),",
            "so loss, recon and the IWAE bound are on the same footing; 'squared error' is the error alone."]


def nelbo_name(model):
    """The row of the negative ELBO: recon + KL (beta = 1), a bound on -log p(x) (given y for a conditional model)."""
    given = " | y" if getattr(model, "needs_labels", False) else ""
    return f"test -ELBO = recon + KL (a bound on -log p(x{given}))"


def loss_name(model):
    """The row of the training objective on the test images: recon + beta KL, named with its beta when not 1."""
    beta = getattr(model, "beta", 1.0)
    return "test loss" if beta == 1.0 else f"test loss = recon + {beta:g} KL (the training objective)"


def test_figures(model, x, k=100, n_iwae=1000, labels=None):
    """{name: value} of the test figures: loss, -ELBO, recon (+ squared error), KL, IWAE bound, active units, and
    the test accuracy of a model with a classifier inside (M2's q(y|x)).

    ``labels`` (the test labels) score that accuracy, and are given to a conditional model's other figures.
    """
    with_classifier = hasattr(model, "accuracy") and labels is not None
    accuracy = 100.0 * model.accuracy(x, labels) if with_classifier else None
    labels = labels if getattr(model, "needs_labels", False) else None
    test = evaluate(model, x, labels=labels)
    const = recon_constant(model)
    vae = hasattr(model, "beta")  # an encoder q(z|x): a KL term, an ELBO and an IWAE bound
    figures = {loss_name(model): test["loss"] + const}
    if vae:
        figures[nelbo_name(model)] = test["recon"] + test["kl"] + const
    figures["test recon"] = test["recon"] + const
    if model.likelihood == "gaussian":
        figures["test squared error"] = test["recon"]
    if vae:
        figures["test KL"] = test["kl"]
        n = min(n_iwae, x.shape[0])
        given = "" if labels is None else " given the label"
        figures[f"test IWAE NLL bound{given} (k={k}, {n} images)"] = iwae_bound(
            model, x[:n], k=k, labels=None if labels is None else labels[:n])
        figures["active units"] = active_units(model, x, labels=labels)
    if accuracy is not None:
        figures["test accuracy (%)"] = accuracy
    return figures


def print_figures(figures, model, dataset):
    rows = [(name, f"{value:.2f}" if isinstance(value, float) else value) for name, value in figures.items()]
    print(table(rows, ("test figure", "value")))
    for line in units_lines(model, dataset):
        print(line)
