"""The playground: train a small network in the browser and watch backpropagation work.

``chainrule playground`` (extra ``playground``: starlette, uvicorn, websockets) serves a page
written in this package (``static/``: HTML, JavaScript and CSS drawn with Canvas 2D, no CDN)
on 127.0.0.1 with a token in its URL. The network is a chainrule model trained on a thread of
the server, step by step through the trainer's ``train_step``; the page shows the data, the
network (links coloured by their weights, each neuron's output over the plane), the decision
heat-map, live losses and gradient-flow warnings, and explains any weight's gradient with
:func:`chainrule.explain`. The whole setup lives in the URL hash (:class:`PlaygroundState`).
"""

from typing import Any

__all__ = ["PlaygroundState", "Session", "serve"]


def __getattr__(name: str) -> Any:  # the CLI imports .command without loading the rest
    if name == "PlaygroundState":
        from .state import PlaygroundState

        return PlaygroundState
    if name == "Session":
        from .session import Session

        return Session
    raise AttributeError(f"module 'chainrule.playground' has no attribute {name!r}")


def serve(*args: object, **kwargs: object) -> None:
    """Serve the playground (see :func:`chainrule.playground.server.serve`)."""
    from .server import serve as _serve

    _serve(*args, **kwargs)  # type: ignore[arg-type]
