"""Train on each image and its counterfactual twin together, and make them agree.

Replacing half the training views by their twin (celltwin's recipe) shows a
cell in one look per step and never asks the two answers to match. Here each
batch holds `n` views followed by the `n` twins of the same images
(bloodcell.pipeline.make_dataset with `twin_pairs`), and the training loss
adds to the cross-entropy a Jensen-Shannon divergence between each image's
and its twin's predicted distributions, as AugMix does for its augmentations
(Hendrycks et al., ICLR 2020): the other lab's look is then a change the
network is told to ignore, not just another example.

Validation and evaluation see plain batches and the plain cross-entropy.
"""

from __future__ import annotations

import keras
from keras import ops

# Keeps the logarithms finite when a probability is exactly 0.
_EPSILON = 1e-7


def paired_jensen_shannon(probabilities):
    """Mean Jensen-Shannon divergence between the batch's first and second halves, row by row (nats)."""
    half = ops.shape(probabilities)[0] // 2
    first, second = probabilities[:half], probabilities[half:2 * half]
    middle = (first + second) / 2.0

    def kl_to_middle(p):
        return ops.sum(p * (ops.log(p + _EPSILON) - ops.log(middle + _EPSILON)), axis=-1)

    return ops.mean((kl_to_middle(first) + kl_to_middle(second)) / 2.0)


class TwinConsistencyModel(keras.Model):
    """A functional model whose training loss adds `weight` x the image-twin divergence.

    Build it on an existing network's graph, `TwinConsistencyModel(weight,
    inputs=net.inputs, outputs=net.outputs)`: the two share every layer, so
    training one trains the other, and the plain network is what gets saved.
    """

    def __init__(self, weight: float, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if weight <= 0:
            raise ValueError(f"the consistency weight must be positive, got {weight}")
        self.consistency_weight = float(weight)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x, y, y_pred, sample_weight, training)
        if training:
            loss = loss + self.consistency_weight * paired_jensen_shannon(y_pred)
        return loss
