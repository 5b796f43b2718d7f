"""The playground's state and its URL hash: exact round trip, defaults, refusals."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainrule.playground.state import (
    ACTIVATIONS,
    CLASSIFICATION_DATASETS,
    FEATURES,
    MAX_LAYERS,
    MAX_NEURONS,
    OPTIMIZERS,
    REGRESSION_DATASETS,
    RESET_KEYS,
    PlaygroundState,
)

positive = st.floats(min_value=1e-12, max_value=100.0, allow_nan=False, allow_infinity=False)


@st.composite
def states(draw: st.DrawFn) -> PlaygroundState:
    problem = draw(st.sampled_from(["classification", "regression"]))
    pool = CLASSIFICATION_DATASETS if problem == "classification" else REGRESSION_DATASETS
    fx = draw(st.integers(0, 50))
    fy = draw(st.integers(0, 50).filter(lambda v: v != fx))
    return PlaygroundState(
        dataset=draw(st.sampled_from(pool)),
        classes=draw(st.integers(2, 6)),
        noise=draw(st.integers(0, 50)),
        ratio=draw(st.integers(10, 90)),
        features=tuple(draw(st.lists(st.sampled_from(FEATURES), min_size=1, unique=True))),
        layers=tuple(draw(st.lists(st.integers(1, MAX_NEURONS), max_size=MAX_LAYERS))),
        lr=draw(positive),
        activation=draw(st.sampled_from(ACTIVATIONS)),
        optimizer=draw(st.sampled_from(OPTIMIZERS)),
        reg=draw(st.sampled_from(["none", "l1", "l2"])),
        regRate=draw(st.floats(min_value=0.0, max_value=10.0, allow_nan=False)),
        batchSize=draw(st.integers(1, 256)),
        problem=problem,
        seed=draw(st.integers(0, 2**31 - 1)),
        fx=fx,
        fy=fy,
    )


@settings(max_examples=300, deadline=None)
@given(states())
def test_state_to_hash_and_back_is_the_same_state(s):
    h = s.to_hash()
    assert PlaygroundState.from_hash(h) == s
    assert PlaygroundState.from_hash("#" + h) == s
    assert PlaygroundState.from_hash(h).to_hash() == h  # one text per state


@settings(max_examples=200, deadline=None)
@given(states(), st.data())
def test_any_subset_of_keys_round_trips_with_defaults_for_the_rest(s, data):
    parts = s.to_hash().split("&")
    keep = data.draw(st.lists(st.sampled_from(parts), unique=True))
    keys = {p.split("=")[0] for p in keep}
    if "dataset" in keys or "problem" in keys:  # the pair must agree
        keep = [p for p in keep if p.split("=")[0] not in ("dataset", "problem")]
        keep += [f"dataset={s.dataset}", f"problem={s.problem}"]
    if ("fx" in keys) != ("fy" in keys):
        keep = [p for p in keep if p.split("=")[0] not in ("fx", "fy")]
    parsed = PlaygroundState.from_hash("&".join(keep))
    for p in keep:
        key = p.split("=")[0]
        assert getattr(parsed, key) == getattr(s, key)


def test_defaults_are_tensorflow_playgrounds_first_screen():
    s = PlaygroundState.from_hash("")
    assert (s.dataset, s.features, s.layers, s.lr, s.activation, s.batchSize, s.ratio) == (
        "circle",
        ("x1", "x2"),
        (4, 2),
        0.03,
        "tanh",
        10,
        50,
    )


def test_javascript_number_forms_parse_to_the_same_float():
    # the page writes String(1e-5) == "0.00001"; Python writes repr(1e-05) == "1e-05"
    assert PlaygroundState.from_hash("lr=0.00001").lr == PlaygroundState.from_hash("lr=1e-05").lr
    assert PlaygroundState.from_hash("lr=0.00001").to_hash().count("lr=1e-05") == 1


def test_a_dataset_alone_implies_its_problem():
    assert PlaygroundState.from_hash("dataset=plane").problem == "regression"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("lr=0", r"lr must be a finite number > 0"),
        ("lr=nan", r"lr must be a finite number"),
        ("lr=abc", r"lr must be a number, got 'abc'"),
        ("layers=4,9", r"layers must be between 1 and 8, got 9"),
        ("layers=1,1,1,1,1,1,1", r"at most 6 hidden layers, got 7"),
        ("features=", r"features must name at least one input"),
        ("features=x1,x3", r"features must be one of .*got 'x3'"),
        ("dataset=moons", r"dataset must be one of"),
        ("colour=red", r"unknown key 'colour'"),
        ("lr", r"is not key=value"),
        ("lr=0.1&lr=0.2", r"gives 'lr' twice"),
        ("dataset=circle&problem=regression", r"classification data set"),
        ("classes=7", r"classes must be between 2 and 6"),
        ("batchSize=0", r"batchSize must be between 1 and 256"),
        ("fx=1&fy=1", r"two different inputs"),
    ],
)
def test_bad_hashes_are_refused_naming_the_key(text, match):
    with pytest.raises(ValueError, match=match):
        PlaygroundState.from_hash(text)


def test_with_value_switches_problem_and_dataset_together():
    s = PlaygroundState()
    r = s.with_value("problem", "regression")
    assert (r.dataset, r.problem) == ("plane", "regression")
    c = r.with_value("dataset", "spiral")
    assert (c.dataset, c.problem) == ("spiral", "classification")
    v = PlaygroundState(fx=0, fy=1).with_value("fx", "1")
    assert (v.fx, v.fy) == (1, 0)  # picking the other axis's input swaps them


def test_reset_keys_are_data_and_network_only():
    assert {"lr", "activation", "reg", "regRate", "batchSize", "optimizer"}.isdisjoint(RESET_KEYS)
    assert {"dataset", "layers", "features", "noise", "ratio", "seed", "classes"} <= RESET_KEYS
