"""Solution degeneracy of task-trained RNNs: `dynascope serve`, or `panel serve panels/degeneracy.py`."""

import panel as pn

from explorer.degeneracy_app import DegeneracyExplorer
from explorer.serving import app_options

pn.extension()

DegeneracyExplorer(**app_options("degeneracy")).servable(title="Dynascope · solution degeneracy")
