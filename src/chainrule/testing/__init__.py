"""Contracts that every addition to chainrule must pass.

:func:`check_primitive` checks one registered primitive (gradients in float64 against central
differences, float32 against float64, the PyTorch oracle, broadcasting, empty shapes); run it
over :func:`registered_primitives` so that a new primitive is tested by registering it::

    import pytest
    from chainrule.testing import check_primitive, registered_primitives

    @pytest.mark.parametrize("prim", registered_primitives(), ids=lambda p: p.name)
    def test_primitive(prim):
        check_primitive(prim)

PyTorch (the oracle) is imported only when a check needs it.
"""

from .primitives import PrimitiveCheckError, PrimitiveReport, check_primitive, registered_primitives

__all__ = ["PrimitiveCheckError", "PrimitiveReport", "check_primitive", "registered_primitives"]
