"""Dynascope's landing page: one card per app."""

import panel as pn

from explorer.serving import index_page

pn.extension()

index_page().servable(title="Dynascope")
