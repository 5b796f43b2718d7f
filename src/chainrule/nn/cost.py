"""What one forward pass of a model costs, asked of each layer.

Each module reports its own multiply-adds for an input shape (:meth:`Module.flops`) and the shape
it gives (:meth:`Module.output_shape`); :func:`layer_flops` follows the shapes through a model
and collects the costs. A layer added later (a convolution) is counted as soon as it defines
its ``flops``: nothing here knows any layer by name. ``fit``'s BLAS-thread policy
(:func:`chainrule.training.blas_threads_for`) reads the largest of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from .module import Module, Sequential

__all__ = ["layer_flops"]

Shape = tuple[int | None, ...]


def layer_flops(model: Module, input_shape: Sequence[int | None]) -> dict[str, int]:
    """Multiply-adds of one forward pass, per module with a cost of its own.

    Shapes are followed through a :class:`Sequential` (each layer's ``output_shape``); the
    submodules of any other module are taken in the order they were registered (chainrule
    cannot see how its forward calls them: PyTorch's habit of registering them in the order
    they run makes this right for most models; a wrong guess only misjudges the size). A
    layer that needs sizes it is not given counts 0; one that reports no cost but has weights
    of its own counts ``batch × its weights`` (each is used at least once per sample).

    Parameters
    ----------
    model : Module
    input_shape : sequence of int
        The shape of one input batch, batch first: ``(batch_size, *X.shape[1:])``.

    Returns
    -------
    dict
        Dotted module name (``""`` for the model itself) to its multiply-adds; modules that cost
        nothing are left out.

    Examples
    --------
    >>> import chainrule as cr
    >>> from chainrule.nn.cost import layer_flops
    >>> layer_flops(cr.nn.mlp([784, 256, 10], rng=0), (32, 784))
    {'0': 6422528, '2': 81920}
    """
    shape: Shape = tuple(input_shape)
    if not shape:
        raise ValueError("input_shape must start with the batch size, got ()")
    costs: dict[str, int] = {}
    _visit(model, "", shape, costs)
    return costs


def _visit(module: Module, name: str, shape: Shape, costs: dict[str, int]) -> Shape:
    """Record ``module``'s cost (and its submodules') for input ``shape``; its output shape
    (``(batch, None)`` when unknown)."""
    unknown: Shape = (shape[0], None)
    try:
        own = module.flops(shape)
    except (TypeError, ValueError):  # a layer that cannot take this (guessed) shape
        own = 0
    if not own and shape[0] is not None:
        # a layer that does not report its cost but has weights of its own: each weight is
        # used at least once per sample, a lower bound that keeps a big custom layer from
        # counting as free
        n_own = sum(p.data.size for _, p in module._own_parameters())
        own = shape[0] * n_own
    if own:
        costs[name] = int(own)
    prefix = f"{name}." if name else ""
    # a Sequential's children run in order; another module's forward cannot be followed, so
    # its children are taken in the order they were registered — PyTorch's habit (features,
    # then classifier), a guess that only steers BLAS threads — until a shape is unknown
    current = shape
    children = list(module.named_children())
    for child_name, child in children:
        current = _visit(child, prefix + child_name, current, costs)
    try:
        out = module.output_shape(shape)
    except (TypeError, ValueError):
        out = None
    if out is None and children and not isinstance(module, Sequential):
        out = current if current[1:] != (None,) else None
    return unknown if out is None else tuple(out)
