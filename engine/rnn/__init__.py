"""Task-trained RNN ensembles for solution-degeneracy studies (Huang et al.)."""

from engine.rnn.ensemble import EnsembleResult, EnsembleRNN, TrainConfig, train_ensemble
from engine.rnn.tasks import TASKS, DelayedDiscrimination, FlipFlop, PathIntegration, SineGeneration, make_task

__all__ = [
    "TASKS",
    "DelayedDiscrimination",
    "EnsembleRNN",
    "EnsembleResult",
    "FlipFlop",
    "PathIntegration",
    "SineGeneration",
    "TrainConfig",
    "make_task",
    "train_ensemble",
]
