"""Image-twin consistency: the divergence, and the loss only training adds it to."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from bloodcell.consistency import TwinConsistencyModel, paired_jensen_shannon


def _jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    middle = (p + q) / 2

    def kl(a):
        inside = a > 0
        return float(np.sum(a[inside] * np.log(a[inside] / middle[inside])))

    return (kl(p) + kl(q)) / 2


def test_divergence_pairs_row_i_with_row_i_plus_half():
    views = np.array([[1.0, 0.0, 0.0], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1]], "float32")
    twins = np.array([[0.0, 1.0, 0.0], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6]], "float32")
    expected = np.mean([_jensen_shannon(p, q) for p, q in zip(views, twins)])
    got = float(paired_jensen_shannon(np.concatenate([views, twins])))
    assert got == pytest.approx(expected, abs=1e-5)
    # Disjoint answers reach the bound, ln 2; identical ones give 0; order within a pair does not matter.
    assert float(paired_jensen_shannon(np.concatenate([views[:1], twins[:1]]))) == pytest.approx(np.log(2), abs=1e-5)
    assert float(paired_jensen_shannon(np.concatenate([views, views]))) == pytest.approx(0.0, abs=1e-6)
    assert got == pytest.approx(float(paired_jensen_shannon(np.concatenate([twins, views]))), abs=1e-6)


def _network() -> keras.Model:
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Dense(8, activation="relu")(inputs))
    return keras.Model(inputs, outputs)


def test_training_loss_adds_the_weighted_divergence_and_evaluation_does_not():
    keras.utils.set_random_seed(0)
    network = _network()
    trainer = TwinConsistencyModel(12.0, inputs=network.inputs, outputs=network.outputs)
    trainer.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy())
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    y = np.array([0, 1, 2, 0, 0, 1, 2, 0])
    probabilities = trainer(x)
    cross_entropy = float(keras.losses.SparseCategoricalCrossentropy()(y, probabilities))
    divergence = float(paired_jensen_shannon(probabilities))
    assert divergence > 1e-4
    assert float(trainer.compute_loss(x, y, probabilities, training=True)) == pytest.approx(
        cross_entropy + 12.0 * divergence, rel=1e-5)
    assert float(trainer.compute_loss(x, y, probabilities, training=False)) == pytest.approx(cross_entropy, rel=1e-5)
    # So the validation loss that early stopping watches is the plain cross-entropy.
    assert trainer.evaluate(x, y, batch_size=8, verbose=0) == pytest.approx(cross_entropy, rel=1e-5)


def test_training_the_consistency_model_trains_the_network_it_was_built_on():
    keras.utils.set_random_seed(0)
    network = _network()
    before = [w.copy() for w in network.get_weights()]
    trainer = TwinConsistencyModel(1.0, inputs=network.inputs, outputs=network.outputs)
    trainer.compile(optimizer=keras.optimizers.Adam(0.05), loss=keras.losses.SparseCategoricalCrossentropy())
    x = np.random.default_rng(1).normal(size=(16, 4)).astype("float32")
    trainer.fit(x, np.tile([0, 1, 2, 1, 0, 2, 1, 0], 2), batch_size=16, epochs=3, verbose=0)
    assert any(not np.allclose(a, b) for a, b in zip(before, network.get_weights()))
    np.testing.assert_allclose(network.predict(x, verbose=0), trainer.predict(x, verbose=0))


def test_agreement_is_learned_between_the_halves():
    """With no label signal to fit, the divergence alone pulls each pair's answers together."""
    keras.utils.set_random_seed(0)
    network = _network()
    trainer = TwinConsistencyModel(50.0, inputs=network.inputs, outputs=network.outputs)
    trainer.compile(optimizer=keras.optimizers.Adam(0.02), loss=keras.losses.SparseCategoricalCrossentropy())
    rng = np.random.default_rng(2)
    views = rng.normal(size=(16, 4)).astype("float32")
    pairs = np.concatenate([views, views + rng.normal(scale=1.0, size=views.shape).astype("float32")])
    labels = np.concatenate([np.arange(16) % 3, (np.arange(16) + 1) % 3])  # each pair's labels disagree
    start = float(paired_jensen_shannon(network(pairs)))
    trainer.fit(pairs, labels, batch_size=32, epochs=150, verbose=0, shuffle=False)
    assert float(paired_jensen_shannon(network(pairs))) < start / 3


@pytest.mark.parametrize("weight", [0.0, -1.0])
def test_weight_must_be_positive(weight):
    network = _network()
    with pytest.raises(ValueError, match="positive"):
        TwinConsistencyModel(weight, inputs=network.inputs, outputs=network.outputs)
