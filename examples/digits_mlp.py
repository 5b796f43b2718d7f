"""Train an MLP on scikit-learn's handwritten digits with chainrule's pieces, in a plain loop.

Model (Sequential of Linear/ReLU/Dropout), loss (CrossEntropyLoss), optimizer (AdamW) and
schedule (LinearWarmup then cosine) are chainrule's; scikit-learn only provides the data.

Run:  python examples/digits_mlp.py        (needs scikit-learn: pip install "chainrule[datasets]")
"""

from __future__ import annotations

import numpy as np

import chainrule as cr
from chainrule import nn, optim
from chainrule.optim import lr_scheduler


def load_digits_split(seed: int) -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y, random_state=seed)
    mean, std = X_tr.mean(axis=0), X_tr.std(axis=0) + 1e-8  # fitted on training data only
    return (
        ((X_tr - mean) / std).astype(np.float32),
        ((X_te - mean) / std).astype(np.float32),
        y_tr,
        y_te,
    )


def main(epochs: int = 40, batch_size: int = 32, seed: int = 0, verbose: bool = True) -> float:
    X_tr, X_te, y_tr, y_te = load_digits_split(seed)
    rng = np.random.default_rng(seed)
    model = nn.mlp([64, 256, 128, 10], "relu", dropout=0.2, rng=rng)
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    steps = epochs * int(np.ceil(len(X_tr) / batch_size))
    sched = lr_scheduler.LinearWarmup(
        opt, 50, then=lr_scheduler.CosineAnnealingLR(opt, T_max=steps - 50)
    )
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(X_tr))
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            loss = loss_fn(model(X_tr[idx]), y_tr[idx])  # forward pass and loss
            opt.zero_grad()
            loss.backward()  # backward pass: every gradient
            opt.step()  # w <- w - lr * (Adam's step)
            sched.step()
            total += loss.item() * len(idx)
        if verbose and (epoch % 10 == 0 or epoch == epochs - 1):
            print(f"epoch {epoch + 1:3d}  train loss {total / len(X_tr):.4f}")
    model.eval()
    with cr.no_grad():
        accuracy = float((model(X_te).data.argmax(axis=1) == y_te).mean())
    if verbose:
        print(f"test accuracy: {accuracy:.2%}")
    return accuracy


if __name__ == "__main__":
    main()
