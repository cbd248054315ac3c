"""Activation emergence over training: measures, tasks, fitted emergence laws, feature visualisations.

- :mod:`engine.emergence.config`: :class:`EmergenceConfig`, one flat config for the five tasks.
- :mod:`engine.emergence.training`: :class:`EmergenceStream`, training as a stream of probe chunks.
- :mod:`engine.emergence.measures`: top/median ratio, Sun's massive test, ReLU sparsity,
  induction and previous-token scores.
- :mod:`engine.emergence.lm`, :mod:`engine.emergence.icl`, :mod:`engine.emergence.grokking`: the
  task runs (Bigram-Backcopy language modelling and associative recall; Reddy's bursty in-context
  classification; modular addition).
- :mod:`engine.emergence.fits`: the five-parameter emergence law and logistic onsets;
  :mod:`engine.emergence.summary`: both applied to a run.
- :mod:`engine.emergence.features`: top-activating inputs, activation maximisation, multifaceted
  visualisation.
"""

from engine.emergence.config import TASKS, EmergenceConfig
from engine.emergence.training import EmergenceStream, train_run

__all__ = ["TASKS", "EmergenceConfig", "EmergenceStream", "train_run"]
