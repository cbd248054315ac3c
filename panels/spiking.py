"""Live spiking networks: `dynascope serve`, or `panel serve panels/spiking.py`."""

import panel as pn

from explorer.serving import app_options
from explorer.spiking_app import SpikingExplorer

pn.extension(notifications=True)

SpikingExplorer(**app_options("spiking")).servable(title="Dynascope · spiking networks")
