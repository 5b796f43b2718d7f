"""Issue 19, re-checked under real ``mpiexec``: ``Trainer.steps()`` on several processes,
class weights and a regression loss, and models that differ in dtype or parameter order."""

from __future__ import annotations

import numpy as np
import pytest

from .test_distributed import assert_same_run, load, ok, rel, run


def test_distributed_trainer_steps_equals_one_process_step_by_step(tmp_path):
    # one step at a time, the learning rate halved after step 5, the loop left at step 17
    # (mid-epoch 2: 82 training rows in batches of 10), dropout and batch norm in the model
    ok(run(tmp_path, 0, "steps", str(tmp_path / "p1.npz")))
    ref = load(tmp_path / "p1.npz")
    assert ref["logs"].shape == (18, 7) and str(ref["stop_reason"]) == "caller"
    assert ref["logs"][6, 5] == ref["logs"][5, 5] / 2  # the caller's change took effect
    for n in (2, 3):
        ok(run(tmp_path, n, "steps", str(tmp_path / f"p{n}.npz"), "--distributed"))
        got = load(tmp_path / f"p{n}.npz")
        assert str(got["stop_reason"]) == "caller"
        # every step's logs: epoch, batch, step, global batch loss, global batch size, lr
        np.testing.assert_array_equal(
            got["logs"][:, [0, 1, 2, 4, 5, 6]], ref["logs"][:, [0, 1, 2, 4, 5, 6]]
        )
        for key in ("logs", "loss", "val_loss", "weights", "buffers"):
            assert rel(ref[key], got[key]) < 1e-10, (n, key, rel(ref[key], got[key]))


@pytest.mark.parametrize(
    "variant",
    [
        ["--loss", "class_weighted"],
        ["--class-weight", "balanced", "--no-sample-weight"],
        ["--loss", "mse", "--model", "mlp"],
    ],
    ids=["CrossEntropyLoss(weight=)", "class_weight=balanced", "mse"],
)
def test_class_weights_and_regression_give_the_same_run_on_three_processes(tmp_path, variant):
    ok(run(tmp_path, 0, "train", str(tmp_path / "p1.npz"), *variant))
    ok(run(tmp_path, 3, "train", str(tmp_path / "p3.npz"), *variant, "--distributed"))
    assert_same_run(load(tmp_path / "p1.npz"), load(tmp_path / "p3.npz"))


@pytest.mark.parametrize(
    "how, first_difference",
    [
        ("dtype", "parameter '0.weight' (5, 8) float64 on rank 0 but parameter '0.weight' (5, 8) "
                  "float32 on rank 1"),
        ("order", "parameter '0.weight' (5, 8) float64 on rank 0 but parameter '1.weight' (5, 8) "
                  "float64 on rank 1"),
    ],
)  # fmt: skip
def test_models_of_another_dtype_or_order_are_refused_on_every_process(
    tmp_path, how, first_difference
):
    proc = run(tmp_path, 2, "mismatch", str(tmp_path / "x.npz"), "--fault", how, timeout=60)
    assert proc.returncode != 0
    assert f"the processes hold different models (entry 0 is {first_difference})" in proc.stderr
