"""Activation emergence over training, live and stored: `dynascope serve`, or `panel serve panels/emergence.py`."""

import panel as pn

from explorer.emergence_app import EmergenceExplorer
from explorer.serving import app_options

pn.extension()

EmergenceExplorer(**app_options("emergence")).servable(title="Dynascope · emergence")
