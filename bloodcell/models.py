"""The two model architectures: a compact CNN and MobileNetV2 transfer learning.

Both take raw RGB pixels (0..255) of shape (size, size, 3), scale them inside
the graph, and end in a `logits` Dense layer followed by a `probabilities`
softmax. Keeping logits as a named layer lets Grad-CAM and temperature
scaling work on scores rather than saturated probabilities.

MobileNetV2 is built as one flat functional graph (the head attached to the
base's output tensor), because tf-keras-vis' Grad-CAM cannot reach inside a
nested Model under Keras 3.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers, regularizers

from bloodcell.config import MODEL_NAMES, NUM_CLASSES
from bloodcell.errors import BloodcellError
from bloodcell.imaging import CELL_VIEW, FILL_CELL_VIEW, FULL_VIEW, GREY_CELL_VIEW


@dataclass(frozen=True)
class ModelSpec:
    """Fixed facts about an architecture that every code path shares."""

    name: str
    input_size: int
    last_conv_layer: str  # Grad-CAM target
    description: str
    backbone: str  # "cnn" or "mobilenetv2": which builder and training recipe
    view: str = FULL_VIEW  # what the model sees (bloodcell.imaging.VIEWS)


MODEL_SPECS: dict[str, ModelSpec] = {
    "cnn": ModelSpec(
        name="cnn",
        input_size=128,
        last_conv_layer="block4_relu2",
        description="Compact CNN trained from scratch: four conv blocks with batch "
        "normalisation, L2 weight decay and dropout, global average pooling.",
        backbone="cnn",
    ),
    "mobilenetv2": ModelSpec(
        name="mobilenetv2",
        input_size=224,
        last_conv_layer="out_relu",
        description="MobileNetV2 (alpha 1.0) pretrained on ImageNet, new classification "
        "head, then the top blocks fine-tuned at a low learning rate.",
        backbone="mobilenetv2",
    ),
    "cellfocus": ModelSpec(
        name="cellfocus",
        input_size=224,
        last_conv_layer="out_relu",
        description="MobileNetV2 transfer learning on the cell view: each image cropped to "
        "its white cell, stain-normalised to one reference and its background removed, "
        "trained with hard colour augmentation, a random focus (blur or sharpen) and a random "
        "magnification between the two labs', so that colour, sharpness and size in the frame say "
        "little about the lab and the model has to look at the cell.",
        backbone="mobilenetv2",
        view=CELL_VIEW,
    ),
    "cellgrey": ModelSpec(
        name="cellgrey",
        input_size=224,
        last_conv_layer="out_relu",
        description="cellfocus' recipe on the grey cell view: the same crop, stain normalisation and "
        "background removal, then grey levels only and fine detail capped at the softer lab's level, "
        "so that neither colour nor the sharper scanner is there to learn; what is left is the "
        "cell's shape, its nucleus and its coarser texture.",
        backbone="mobilenetv2",
        view=GREY_CELL_VIEW,
    ),
    "cellfill": ModelSpec(
        name="cellfill",
        input_size=224,
        last_conv_layer="out_relu",
        description="cellfocus' recipe on the filled cell view: the same stain normalisation, background "
        "removal and colour augmentation, but the crop follows the cell alone, so every cell fills its "
        "view and its size in the photo (which depends on the lab's magnification) is not there to "
        "learn; what is left is the cell's shape, its nucleus and its texture.",
        backbone="mobilenetv2",
        view=FILL_CELL_VIEW,
    ),
    "celltexture": ModelSpec(
        name="celltexture",
        input_size=224,
        last_conv_layer="out_relu",
        description="cellfocus' recipe and cell view, plus random textures while training: half the views "
        "filtered by a random small convolution that keeps the cell's form and replaces its fine texture, "
        "so that what a scanner, its compression and a stain do to texture (which differs from lab to lab "
        "and has no name to imitate) is not worth learning.",
        backbone="mobilenetv2",
        view=CELL_VIEW,
    ),
    "celltwin": ModelSpec(
        name="celltwin",
        input_size=224,
        last_conv_layer="out_relu",
        description="celltexture's recipe and cell view, plus counterfactual twins while training: half the "
        "views show the same cell as the other lab would (its stain, background, magnification and "
        "sharpness) under the same label, so that no part of the two labs' looks is worth learning.",
        backbone="mobilenetv2",
        view=CELL_VIEW,
    ),
}
assert tuple(MODEL_SPECS) == MODEL_NAMES

# MobileNetV2 layers from this one on are unfrozen for fine-tuning (the last
# three inverted-residual blocks and the final 1x1 convolution).
MOBILENET_FINE_TUNE_FROM = "block_14_expand"


def get_spec(name: str) -> ModelSpec:
    try:
        return MODEL_SPECS[name]
    except KeyError:
        raise BloodcellError(f"unknown model '{name}' (choose from: {', '.join(MODEL_NAMES)})") from None


def _classifier_head(features, dropout: float, weight_decay: float):
    x = layers.GlobalAveragePooling2D(name="features")(features)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    logits = layers.Dense(
        NUM_CLASSES, kernel_regularizer=regularizers.l2(weight_decay), name="logits"
    )(x)
    return layers.Activation("softmax", dtype="float32", name="probabilities")(logits)


# Batch-norm statistics that follow the weights within a fraction of an epoch;
# Keras' default (0.99) lags behind while a from-scratch network still moves fast.
BN_MOMENTUM = 0.9


def build_cnn(input_size: int = MODEL_SPECS["cnn"].input_size, weight_decay: float = 5e-5,
              filters: tuple[int, ...] = (32, 64, 128, 128), dropout: float = 0.3,
              name: str = "cnn") -> keras.Model:
    """A strided stem, then four blocks of two 3x3 convolutions with batch norm.

    Dropout sits in the head only: dropout between batch-norm layers shifts
    the activation variance between training and inference.

    The stride-2 stem quarters the cost of every later layer, which is what
    lets this network train on two CPU cores in minutes.
    """
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Rescaling(1.0 / 255.0, name="scale")(inputs)
    x = layers.Conv2D(filters[0], 3, strides=2, padding="same", use_bias=False,
                      kernel_regularizer=regularizers.l2(weight_decay), name="stem_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for block, width in enumerate(filters, start=1):
        for conv in (1, 2):
            x = layers.Conv2D(
                width, 3, padding="same", use_bias=False,
                kernel_regularizer=regularizers.l2(weight_decay),
                name=f"block{block}_conv{conv}",
            )(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{block}_bn{conv}")(x)
            x = layers.ReLU(name=f"block{block}_relu{conv}")(x)
        if block < len(filters):
            x = layers.MaxPooling2D(name=f"block{block}_pool")(x)
    outputs = _classifier_head(x, dropout, weight_decay)
    return keras.Model(inputs, outputs, name=name)


def build_mobilenetv2(input_size: int = MODEL_SPECS["mobilenetv2"].input_size,
                      weights: str | None = "imagenet", dropout: float = 0.2,
                      weight_decay: float = 1e-5, name: str = "mobilenetv2") -> keras.Model:
    """MobileNetV2 on `weights` with a new head, as one flat functional graph.

    `weights` is "imagenet" (Keras downloads it), a local `.h5` file, or None.
    """
    inputs = keras.Input((input_size, input_size, 3), name="image")
    # MobileNetV2 expects pixels in [-1, 1].
    scaled = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(inputs)
    try:
        base = keras.applications.MobileNetV2(
            input_tensor=scaled, include_top=False, weights=weights, alpha=1.0
        )
    except Exception as exc:  # download failure, bad file or wrong shape
        if weights == "imagenet":
            raise BloodcellError(
                "could not download the ImageNet weights for MobileNetV2 "
                f"({type(exc).__name__}); set BLOODCELL_IMAGENET_WEIGHTS or --base-weights "
                "to a local mobilenet_v2_1.0_224_no_top.h5"
            ) from None
        raise BloodcellError(f"could not load ImageNet weights from {weights}: {exc}") from None
    outputs = _classifier_head(base.output, dropout, weight_decay)
    return keras.Model(inputs, outputs, name=name)


def set_mobilenet_trainable(model: keras.Model, fine_tune: bool,
                            fine_tune_from: str = MOBILENET_FINE_TUNE_FROM) -> None:
    """Freeze the whole base, or unfreeze its top blocks for fine-tuning.

    Batch-norm layers stay frozen either way: with small batches their
    statistics would drift away from ImageNet's and hurt accuracy.
    """
    head = {"features", "head_dropout", "logits", "probabilities"}
    unfrozen = False
    for layer in model.layers:
        if layer.name == fine_tune_from:
            unfrozen = fine_tune
        if layer.name in head:
            layer.trainable = True
        elif isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
        else:
            layer.trainable = unfrozen


def build_model(name: str, input_size: int | None = None, base_weights: str | None = "imagenet") -> keras.Model:
    spec = get_spec(name)
    size = input_size or spec.input_size
    if spec.backbone == "cnn":
        return build_cnn(size, name=name)
    return build_mobilenetv2(size, weights=base_weights, name=name)


def is_flat(model: keras.Model) -> bool:
    """True when no layer of `model` is itself a Model (needed by tf-keras-vis)."""
    return not any(isinstance(layer, keras.Model) for layer in model.layers)
