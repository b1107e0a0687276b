"""The figures ``tinyvae train`` writes into a run folder, chosen by what the model can do (not by its kind).

tinyvae.plots (matplotlib: a second or more to import) is imported by the commands that draw, when they draw.
"""
from ..models import loss_units
from .common import conditional

# Every file name a run's figures may take: a replaced or resumed run removes them before writing its own.
FIGURES = ("curves.png", "reconstructions.png", "latent_space.png", "interpolation.png", "samples.png",
           "manifold.png", "denoising.png")


def remove_figures(out):
    for name in FIGURES:
        (out / name).unlink(missing_ok=True)


def write_figures(model, data, history, out, seed):
    """Write the run's figures into ``out``; returns how many."""
    from .. import plots

    x_test, labels = data.x_test, data.y_test
    written = [plots.training_curves(history, path=out / "curves.png", units=loss_units(model))]
    if conditional(model):  # one row of samples per digit
        written.append(plots.conditional_samples(model, per_digit=8, rng=seed, path=out / "samples.png"))
    else:
        written += [plots.reconstructions(model, x_test, path=out / "reconstructions.png"),
                    plots.latent_space(model, x_test[:2000], labels[:2000], path=out / "latent_space.png"),
                    plots.blend_comparison(model, x_test[0], x_test[1], path=out / "interpolation.png")]
        if hasattr(model, "sample"):  # a prior to draw from
            written.append(plots.samples(model, 64, rng=seed, path=out / "samples.png"))
            if model.latent_dim == 2:
                written.append(plots.latent_manifold(model, path=out / "manifold.png"))
        if hasattr(model, "noise"):  # a denoising autoencoder
            written.append(plots.denoising(model, x_test, rng=seed, path=out / "denoising.png"))
    for fig in written:
        fig.clear()
    return len(written)
