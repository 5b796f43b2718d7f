"""cr.manual_seed, and fit(seed=) driving dropout layers built without a generator (issue 13.3)."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn


def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4)).astype(np.float32)
    y = (X[:, 0] - X[:, 1] > 0).astype(np.int64)
    return X, y


def dropout_model():
    # written as users write it: no rng= on the Dropout layers
    return nn.Sequential(
        nn.Linear(4, 16, rng=1), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2, rng=2)
    )


def weights(model):
    return np.concatenate([p.data.ravel() for p in model.parameters()])


def test_manual_seed_fixes_layers_initialisers_and_masks():
    cr.manual_seed(11)
    a = nn.mlp([4, 8, 3], "relu", dropout=0.2)
    w = np.zeros((5, 3), np.float32)
    nn.init.xavier_normal_(w)
    mask_a = nn.Dropout(0.5)(np.ones((4, 6), np.float32)).data
    cr.manual_seed(11)
    b = nn.mlp([4, 8, 3], "relu", dropout=0.2)
    v = np.zeros((5, 3), np.float32)
    nn.init.xavier_normal_(v)
    mask_b = nn.Dropout(0.5)(np.ones((4, 6), np.float32)).data
    assert weights(a).tobytes() == weights(b).tobytes()
    assert w.tobytes() == v.tobytes()
    assert mask_a.tobytes() == mask_b.tobytes()
    cr.manual_seed(12)
    assert not np.array_equal(weights(nn.mlp([4, 8, 3], "relu")), weights(a))


def test_manual_seed_reseeds_a_layer_created_before_it():
    layer = nn.Dropout(0.5)  # as torch: the layer draws from the default generator when it runs
    x = np.ones((8, 8), np.float32)
    cr.manual_seed(5)
    first = layer(x).data
    cr.manual_seed(5)
    assert layer(x).data.tobytes() == first.tobytes()


def test_manual_seed_never_touches_numpys_global_generator():
    before = np.random.get_state()[1].copy()
    cr.manual_seed(3)
    nn.mlp([4, 8, 2], dropout=0.5)(np.ones((3, 4), np.float32))
    X, y = data()
    cr.fit(dropout_model(), X, y, loss="cross_entropy", epochs=1, verbose=0)
    assert np.array_equal(np.random.get_state()[1], before)


@pytest.mark.parametrize("bad", [-1, 1.5, "0", True])
def test_manual_seed_rejects_what_is_not_a_seed(bad):
    with pytest.raises((TypeError, ValueError), match="seed must be a non-negative int"):
        cr.manual_seed(bad)


def test_fit_seed_makes_dropout_without_rng_bitwise_reproducible():
    X, y = data()
    runs = []
    for seed in (7, 7, 8):
        cr.manual_seed(seed * 1000 + len(runs))  # the default generator differs every time
        model = dropout_model()
        h = cr.fit(model, X, y, loss="cross_entropy", epochs=3, batch_size=16, seed=seed, verbose=0)
        runs.append((weights(model), np.asarray(h.history["loss"])))
    assert runs[0][0].tobytes() == runs[1][0].tobytes()
    assert runs[0][1].tobytes() == runs[1][1].tobytes()
    assert not np.array_equal(runs[0][0], runs[2][0])  # the seed is what decides


def test_unseeded_fit_follows_manual_seed():
    X, y = data()
    out = []
    for _ in range(2):
        cr.manual_seed(21)
        model = nn.mlp([4, 16, 2], "relu", dropout=0.25)
        cr.fit(model, X, y, loss="cross_entropy", epochs=2, verbose=0)
        out.append(weights(model))
    assert out[0].tobytes() == out[1].tobytes()


def test_dropout_with_its_own_generator_keeps_it_inside_fit():
    X, y = data()
    out = []
    for seed in (1, 2):  # the run's seed changes, the layer's own generator does not
        model = nn.Sequential(
            nn.Linear(4, 16, rng=1), nn.ReLU(), nn.Dropout(0.3, rng=9), nn.Linear(16, 2, rng=2)
        )
        cr.fit(
            model,
            X,
            y,
            loss="cross_entropy",
            epochs=1,
            batch_size=len(X),
            seed=seed,
            shuffle=False,
            verbose=0,
        )
        out.append(weights(model))
    assert out[0].tobytes() == out[1].tobytes()


def test_resume_with_generator_less_dropout_is_bitwise(tmp_path):
    X, y = data()

    def run(epochs, ckpt, resume=None):
        cr.manual_seed(epochs)  # a different default generator each time: only seed= counts
        model = dropout_model()
        cr.fit(
            model,
            X,
            y,
            loss="cross_entropy",
            epochs=epochs,
            batch_size=16,
            seed=4,
            verbose=0,
            callbacks=[cr.ModelCheckpoint(str(ckpt))],
            resume_from=resume,
        )
        return weights(model)

    full = run(6, tmp_path / "full.chainrule")
    run(3, tmp_path / "part.chainrule")
    resumed = run(6, tmp_path / "again.chainrule", resume=str(tmp_path / "part.chainrule"))
    assert full.tobytes() == resumed.tobytes()


# ----- point 7: callbacks=None and any iterable ------------------------------------------------
class Count(cr.callbacks.Callback):
    def __init__(self):
        self.epochs = 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs += 1


@pytest.mark.parametrize("kind", ["none", "tuple", "generator", "single"])
def test_fit_accepts_none_and_any_iterable_of_callbacks(kind):
    X, y = data()
    c = Count()
    callbacks = {
        "none": None,
        "tuple": (c,),
        "generator": (k for k in [c]),
        "single": c,
    }[kind]
    h = cr.fit(
        nn.mlp([4, 8, 2], rng=0),
        X,
        y,
        loss="cross_entropy",
        epochs=2,
        verbose=0,
        callbacks=callbacks,
    )
    assert len(h.history["loss"]) == 2
    assert c.epochs == (0 if kind == "none" else 2)


def test_fit_names_callbacks_that_are_not_callbacks():
    X, y = data()
    with pytest.raises(TypeError, match="callbacks must be an iterable of Callback"):
        cr.fit(nn.mlp([4, 8, 2], rng=0), X, y, loss="cross_entropy", verbose=0, callbacks=3)
    with pytest.raises(TypeError, match="callbacks must be Callback instances, got str"):
        cr.fit(nn.mlp([4, 8, 2], rng=0), X, y, loss="cross_entropy", verbose=0, callbacks=["early"])


def test_lr_find_seed_fixes_dropout_masks_too():
    X, y = data()
    runs = []
    for k in range(2):
        cr.manual_seed(100 + k)  # only the seed should matter
        model = nn.Sequential(
            nn.Linear(4, 16, rng=1), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 2, rng=2)
        )
        res = cr.lr_find(model, X, y, "cross_entropy", seed=3, num_steps=30)
        runs.append(np.asarray(res.losses))
    assert runs[0].tobytes() == runs[1].tobytes()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sklearn_estimators_without_random_state_follow_manual_seed():
    pytest.importorskip("sklearn")
    from chainrule.sklearn import MLPClassifier

    X, y = data()
    coefs = []
    for _ in range(2):
        cr.manual_seed(9)
        est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3).fit(X, y)
        coefs.append(np.concatenate([c.ravel() for c in est.coefs_]))
    assert coefs[0].tobytes() == coefs[1].tobytes()


def test_manual_seed_drives_rand_and_randn():
    cr.manual_seed(3)
    a, b = cr.randn(2, 3), cr.rand(4)
    cr.manual_seed(3)
    assert np.array_equal(cr.randn(2, 3).data, a.data) and np.array_equal(cr.rand(4).data, b.data)
    assert a.dtype == np.float32
