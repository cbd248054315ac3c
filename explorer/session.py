"""Working with a browser session's Bokeh document from Panel callbacks.

Two Panel 1.9 pitfalls: button callbacks run without the document lock, so changes to Bokeh
models go to the next tick of the server's loop (:func:`locked`); and ``pn.io.hold`` inside a
periodic callback made the server drop the browser's own events while a run streamed, so
updates are batched with Bokeh's own hold (:func:`held`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import panel as pn

__all__ = ["locked", "held"]


def locked(fn: Callable[[], object]) -> None:
    """Run ``fn`` with the session's document locked.

    Panel runs button callbacks without the lock; changes to Bokeh models (our views' sources
    and ranges) need it, so they go to the next tick of the server's loop.
    """
    doc = pn.state.curdoc
    if doc is not None and doc.session_context is not None:
        doc.add_next_tick_callback(fn)
    else:
        fn()


@contextmanager
def held(doc) -> Iterator[None]:
    """Send the changes made inside as one message.

    Bokeh's own hold: ``pn.io.hold`` inside a periodic callback made the server drop the
    browser's slider events while a run streamed (Panel 1.9).
    """
    if doc is None:
        yield
        return
    doc.hold("combine")
    try:
        yield
    finally:
        doc.unhold()
