"""The semi-supervised VAE M2 (issue 21): its whole objective in float64 through the enumeration over the labels,
q(y|x)'s weights, KL(q(y|x) || uniform) and the weighted labeled cross-entropy; the pieces against their
definitions; dynamic binarization; the training loop; checkpoints."""
import math

import numpy as np
import pytest

import tinyvae as tv
from tinyvae import checkpoint, losses
from tinyvae.gradcheck import check_model
from tinyvae.ssvae import SSVAE, bernoulli_binarize, fit, kl_categorical_uniform


def _f64(a):
    return tv.asarray(np.asarray(a, dtype=np.float64), dtype="float64")


def _ssvae(**kw):
    return SSVAE(8, kw.pop("hidden", (6, 5)), 3, num_classes=4, dtype="float64", rng=1, **kw)


def _data(n=5, m=3, seed=0):
    rng = np.random.default_rng(seed)
    return (_f64(rng.random((n, 8))), _f64(rng.random((m, 8))), tv.asarray(rng.integers(0, 4, size=m)),
            _f64(rng.normal(size=(n, 4, 3))))


@pytest.mark.parametrize("n,m,kw", [(5, 3, dict(gen_weight=1.0, class_weight=100.0)),
                                    (1, 1, dict(gen_weight=1.0, class_weight=3.0)),
                                    (4, 2, dict(gen_weight=0.0, class_weight=100.0)),
                                    (3, 4, dict(gen_weight=0.3, class_weight=0.5, hidden=(5,), activation="tanh"))],
                         ids=str)
def test_the_whole_m2_objective_is_gradient_checked(n, m, kw):
    x, xl, yl, eps = _data(n, m, seed=n + m)
    report = check_model(_ssvae(**kw), x, xl=xl, yl=yl, eps=eps)
    assert report.passed, str(report)


def test_the_enumeration_over_all_ten_labels_is_gradient_checked():
    rng = np.random.default_rng(10)
    model = SSVAE(6, (5,), 2, num_classes=10, gen_weight=1.0, class_weight=100.0, dtype="float64", rng=2)
    x, xl = _f64(rng.random((3, 6))), _f64(rng.random((2, 6)))
    report = check_model(model, x, xl=xl, yl=tv.asarray(np.array([9, 4])), eps=_f64(rng.normal(size=(3, 10, 2))))
    assert report.passed, str(report)


def test_without_labeled_images_only_the_generative_term_is_checked():
    x, _, _, eps = _data(3, 1, seed=9)
    report = check_model(_ssvae(), x, eps=eps)
    assert report.passed, str(report)


def test_the_objective_is_the_enumerated_bound_plus_the_weighted_cross_entropy():
    model, (x, xl, yl, eps) = _ssvae(gen_weight=0.7, class_weight=5.0), _data()
    parts = model.loss(x, xl, yl, eps=eps)
    per = model.loss_per_example(x, eps=eps)
    ce = losses.softmax_cross_entropy(model.classify(xl), yl)[0]
    unlabeled = float(tv.get_xp().mean(per["loss"]))
    assert parts.total == pytest.approx(0.7 * unlabeled + 5.0 * ce, rel=1e-12)
    assert parts.recon + parts.kl == pytest.approx(unlabeled, rel=1e-12)
    # q(y|x) is a distribution over the classes for every image
    pi = tv.to_numpy(tv.get_xp().exp(losses._log_softmax(model.classify(x))))
    assert np.allclose(pi.sum(axis=1), 1.0)


def test_kl_to_the_uniform_is_zero_at_the_uniform_and_log_c_at_a_one_hot():
    pi = _f64([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]])
    np.testing.assert_allclose(tv.to_numpy(kl_categorical_uniform(pi)), [0.0, math.log(4), math.log(2)], atol=1e-15)


def test_dynamic_binarization_draws_bernoulli_pixels():
    x = _f64(np.full((200, 50), 0.3))
    draws = tv.to_numpy(bernoulli_binarize(x, tv.Generator(0)))
    assert set(np.unique(draws)) <= {0.0, 1.0}
    assert abs(draws.mean() - 0.3) < 0.01  # 10,000 draws: 4 sigma is 0.0092
    again = tv.to_numpy(bernoulli_binarize(x, tv.Generator(0)))
    assert (again == draws).all()


def test_prediction_accuracy_and_samples_of_each_digit():
    model, (x, _, _, _) = _ssvae(), _data()
    pred = tv.to_numpy(model.predict(x, batch_size=2))
    assert pred.shape == (5,) and set(pred) <= set(range(4))
    assert model.accuracy(x, tv.asarray(pred)) == 1.0
    assert tuple(model.sample(8, rng=0).shape) == (8, 8)


@pytest.mark.backends("numpy")
def test_training_on_a_few_labels_lowers_the_loss_and_fits_the_labels():
    rng = np.random.default_rng(0)
    centers = rng.random((4, 8)) > 0.5
    y = rng.integers(0, 4, size=200)
    x = np.clip(centers[y] * 0.9 + rng.random((200, 8)) * 0.1, 0, 1)
    model = SSVAE(8, (16,), 2, num_classes=4, dtype="float64", rng=0)
    history = fit(model, x, x[:8], y[:8], iterations=150, batch_size=20, lr=3e-3, progress=False, record_every=50)
    assert history.epochs == [50, 100, 150]
    assert history.train_loss[-1] < history.train_loss[0]
    assert model.accuracy(tv.asarray(x[:8]), tv.asarray(y[:8])) == 1.0


@pytest.mark.backends("numpy")
def test_an_ssvae_checkpoint_rebuilds_the_same_model(tmp_path):
    model, (x, xl, yl, eps) = _ssvae(gen_weight=0.5), _data()
    checkpoint.save(model, tmp_path / "ssvae.npz")
    loaded = checkpoint.load(tmp_path / "ssvae.npz").model
    assert isinstance(loaded, SSVAE) and loaded.gen_weight == 0.5
    assert loaded.loss(x, xl, yl, eps=eps).total == model.loss(x, xl, yl, eps=eps).total


def test_bad_eps_and_labels_are_clear_errors():
    model, (x, xl, yl, _) = _ssvae(), _data()
    with pytest.raises(ValueError, match=r"eps must have shape \(N, C, d\)"):
        model.loss(x, xl, yl, eps=_f64(np.zeros((5, 3))))
    with pytest.raises(ValueError, match="labels must lie in"):
        model.loss(x, xl, tv.asarray(np.array([0, 1, 9])))


def test_the_split_encoder_and_broadcast_reconstruction_equal_the_plain_enumeration():
    """The fast twin (x W_x once per image, x never copied C times) against the plain formula on [x, e_c] rows:
    the same loss, the same gradient of every parameter (float64)."""
    x, xl, yl, eps = _data(5, 3, seed=4)
    results = []
    for plain in (True, False):
        model = _ssvae(gen_weight=0.8, class_weight=2.0)
        tv.use_plain(plain)
        try:
            parts = model.loss(x, xl, yl, eps=eps)
            model.zero_grad()
            model.backward()
        finally:
            tv.use_plain(False)
        assert model._loss_grads[2][0] == ("rows" if plain else "split")
        results.append((parts, {name: tv.to_numpy(p.grad) for name, p in model.named_parameters()}))
    (plain_parts, plain_grads), (fast_parts, fast_grads) = results
    for a, b in zip(plain_parts.values(), fast_parts.values()):
        assert float(a) == pytest.approx(float(b), rel=1e-12)
    assert plain_grads.keys() == fast_grads.keys()
    for name in plain_grads:
        np.testing.assert_allclose(fast_grads[name], plain_grads[name], rtol=1e-10, atol=1e-13, err_msg=name)
