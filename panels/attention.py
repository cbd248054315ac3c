"""Attention sinks, live and in a real model: `dynascope serve`, or `panel serve panels/attention.py`."""

import panel as pn

from explorer.attention_app import AttentionExplorer
from explorer.serving import app_options

pn.extension()

AttentionExplorer(**app_options("attention")).servable(title="Dynascope · attention sinks")
