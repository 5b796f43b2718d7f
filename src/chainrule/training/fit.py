"""The training loop's face: :func:`fit`, and the functions that use a trained model.

:func:`fit` is the one call most users need; it builds a :class:`Trainer`
(:mod:`~chainrule.training.trainer`: the run's state, loop and step, what callbacks see as
``self.trainer``). :func:`predict`, :func:`predict_proba` and :func:`evaluate` live in
:mod:`~chainrule.training.evaluation`; step plans in :mod:`~chainrule.training.steps`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .._validation import check_number
from ..nn.module import Module
from .callbacks import Callback
from .evaluation import LOSSES, compute_metrics, evaluate, predict, predict_proba
from .history import History
from .trainer import OPTIMIZERS, DivergenceError, Trainer

__all__ = [
    "LOSSES",
    "OPTIMIZERS",
    "DivergenceError",
    "Trainer",
    "compute_metrics",
    "evaluate",
    "fit",
    "predict",
    "predict_proba",
]


def fit(
    model: Module,
    X: Any,
    y: Any = None,
    *,
    loss: Any,
    optimizer: Any = "adam",
    lr: float | None = None,
    epochs: int = 10,
    batch_size: int | None = 32,
    validation_data: tuple[Any, ...] | None = None,
    validation_split: float = 0.0,
    shuffle: bool = True,
    seed: Any = None,
    metrics: Sequence[Any] = (),
    callbacks: Iterable[Callback] | Callback | None = (),
    scheduler: Any = None,
    verbose: int = 1,
    sample_weight: Any = None,
    class_weight: Any = None,
    tol: float | None = None,
    n_iter_no_change: int = 10,
    on_nonfinite: str = "stop",
    clip_grad_norm: float | None = None,
    resume_from: str | None = None,
    distributed: bool = False,
    accumulate_steps: int = 1,
) -> History:
    """Train ``model`` on ``(X, y)`` by mini-batch gradient descent and return its History.

    Each step: forward pass on a batch, the loss, one backward pass, one optimizer update.

    Parameters
    ----------
    model : Module
        Trained in place.
    X, y : array_like
        Inputs ``(n, ...)`` and targets (class indices for cross-entropy, values for
        regression). For a model with one output per sample ``(n, 1)`` and an elementwise
        loss (MSE, BCE, ...), targets of shape ``(n,)`` are taken as that column, as Keras
        does (the loss modules themselves, like PyTorch's, want equal shapes). Batches are
        gathered by index: the data set is never copied per epoch (a memory-mapped ``.npy``
        works); each batch is converted to the model's dtype.
        Or, with ``y`` omitted, ``X`` an iterable of ``(x, y)`` (or ``(x, y, sample_weight)``)
        batches — a PyTorch DataLoader, a generator, a list — as Keras accepts: the batches are
        read once and concatenated in memory (torch tensors become arrays), and the batch size
        is that of the first batch; ``shuffle`` then reshuffles every epoch as usual.
    loss : Module, callable or str
        E.g. ``nn.CrossEntropyLoss()``, or a name: mse, mae, huber, bce, bce_with_logits,
        cross_entropy, nll.
    optimizer : Optimizer or str, default "adam"
        An optimizer over ``model.parameters()``, or a name (sgd, adam, adamw, rmsprop,
        adagrad) created with ``lr``.
    lr : float, optional
        Learning rate (overrides the optimizer's).
    epochs : int, default 10
        Total number of epochs (a resumed run continues up to this number).
    batch_size : int or None, default 32
        None trains on the full set each step (batch gradient descent); 1 is stochastic
        gradient descent. A smaller last batch is used as it is.
    validation_data : (X_val, y_val) or (X_val, y_val, w_val), optional
    validation_split : float, default 0
        Fraction of the training data held out for validation, chosen with ``seed`` (stratified
        for class labels).
    shuffle : bool, default True
        Shuffle the sample order every epoch with the run's generator.
    seed : int or Generator, optional
        Drives shuffling, the validation split and the masks of dropout layers built without
        a generator of their own (``nn.Dropout(p)``); the same seed gives bitwise-identical runs
        (with the same thread count). None draws the run's generator from chainrule's default
        generator (:func:`chainrule.manual_seed`). NumPy's global generator is never used.
    metrics : list of str or callables
        accuracy, precision, recall, f1, log_loss, mae, mse, rmse, r2, or ``f(y_true, y_pred)``;
        reported for training (``"accuracy"``) and validation (``"val_accuracy"``).
    callbacks : iterable of Callback, a Callback, or None
        EarlyStopping, ModelCheckpoint, LearningRateScheduler, ProgressBar, CSVLogger, or yours.
    scheduler : LRScheduler or ReduceLROnPlateau, optional
        Stepped after every epoch (ReduceLROnPlateau with ``val_loss``, or ``loss``).
    verbose : int, default 1
        0 silent; 1 progress bar on a terminal (one line per epoch in a pipe) and a summary.
    sample_weight : array_like (n,), optional
    class_weight : dict or "balanced", optional
        Per-class weights, multiplied into the sample weights. The reported epoch loss is the
        sample-weighted mean over the epoch's batches.
    tol, n_iter_no_change : float or None, int
        Convergence as scikit-learn: stop when the training loss has not improved by at least
        ``tol`` for more than ``n_iter_no_change`` consecutive epochs. None (default) disables it.
    on_nonfinite : {"stop", "raise", "ignore"}, default "stop"
        The divergence guard: a NaN or infinite loss, gradient or updated weight is caught in
        the step where it appears; "stop" ends training with a message (``history.message``),
        "raise" raises :class:`DivergenceError`; both keep the last finite weights.
    clip_grad_norm : float, optional
        Clip the global gradient norm to this value every step.
    resume_from : str, optional
        A checkpoint written by ``ModelCheckpoint``: restores the weights, optimizer and
        schedule state, generators, history and callbacks, and continues so that the result is
        bitwise equal to an uninterrupted run. Everything is checked before anything changes:
        an unreadable or crafted checkpoint raises ``ModelFileError``, and a resume that fails
        leaves the model and optimizer as they were.
    distributed : bool, default False
        Data-parallel training on the processes started by ``mpiexec`` (the ``distributed``
        extra; :mod:`chainrule.distributed`): ``batch_size`` is the global batch, each process
        computes the gradient of its rows of every batch, one all-reduce sums them, and the
        result equals the single-process run with the same seed to rounding error (dropout
        masks, batch-norm statistics, uneven batches and weights included). Only rank 0 prints
        and writes checkpoints; every process returns the same History.
    accumulate_steps : int, default 1
        Gradient accumulation: each optimizer step sums the gradients of this many consecutive
        batches of ``batch_size`` rows (one update, and in distributed training one
        all-reduce, per ``accumulate_steps`` batches; the memory of one batch). The same
        mathematics as ``batch_size * accumulate_steps``, except that dropout masks and
        batch-norm statistics are per batch of ``batch_size``.

    Returns
    -------
    History
        Per-epoch ``loss``, ``val_loss``, metrics, ``lr`` and ``time``; ``stop_reason``,
        ``best_epoch`` and the end-of-fit ``summary``. Ctrl-C stops cleanly and returns it.

    Notes
    -----
    ``fit`` is ``Trainer(model, loss, optimizer, ...).fit(X, y, ...)``; ``Trainer.steps`` runs
    the same loop one step at a time, and ``Trainer.train_step`` is the step to override.
    Speed: plain MLPs (Linear layers and elementwise activations, a common loss) train through
    a fused step plan without a graph, with the same formulas as ``backward()``. A model whose
    largest matrix product per step is below 2²¹ multiply-adds trains with one BLAS thread
    (as fast when the machine is idle, much steadier when it is busy; set the environment
    variable ``CHAINRULE_BLAS_THREADS=keep`` to leave the threads alone). With numba installed
    (``chainrule[fast]``), Adam on 64 Ki+ parameters runs as one compiled loop, bitwise equal
    to NumPy's (:func:`chainrule.optim.set_kernels`).

    Examples
    --------
    >>> import numpy as np, chainrule as cr
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2)).astype(np.float32)
    >>> y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    >>> model = cr.nn.mlp([2, 16, 2], "tanh", rng=0)
    >>> h = cr.fit(model, X, y, loss="cross_entropy", lr=0.05, epochs=30, seed=0, verbose=0,
    ...            metrics=["accuracy"])
    >>> h.history["accuracy"][-1] > 0.9
    True
    """
    check_number("accumulate_steps", accumulate_steps, low=1, integer=True)
    make: Any = Trainer
    extra: dict[str, Any] = {}
    if distributed or accumulate_steps > 1:
        from .parallel import DistributedTrainer  # imports mpi4py only when it is needed

        if accumulate_steps > 1 and batch_size is None:
            raise ValueError(
                "accumulate_steps > 1 needs a batch_size (the batches whose gradients are "
                "summed), got batch_size=None"
            )
        make, extra = DistributedTrainer, {"distributed": distributed}
        if accumulate_steps > 1:
            extra.update(accumulate_steps=accumulate_steps, micro_batch=batch_size)
            batch_size = int(batch_size) * int(accumulate_steps)  # type: ignore[arg-type]
    trainer = make(
        model,
        loss,
        optimizer,
        lr=lr,
        metrics=metrics,
        callbacks=callbacks,
        scheduler=scheduler,
        seed=seed,
        verbose=verbose,
        on_nonfinite=on_nonfinite,
        clip_grad_norm=clip_grad_norm,
        tol=tol,
        n_iter_no_change=n_iter_no_change,
        **extra,
    )
    return trainer.fit(
        X,
        y,
        epochs=epochs,
        batch_size=batch_size,
        validation_data=validation_data,
        validation_split=validation_split,
        shuffle=shuffle,
        sample_weight=sample_weight,
        class_weight=class_weight,
        resume_from=resume_from,
    )
