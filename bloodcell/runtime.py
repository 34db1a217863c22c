"""Two ways to run a trained network: Keras on TensorFlow, or LiteRT.

Both run the same serving function: one forward pass gives the pooled
penultimate features (for the out-of-distribution score), the logits, and one
class activation map per class. Our heads are global average pooling and a
Dense layer on the last convolution, so the gradient of a class's logit with
respect to that feature map is the Dense weight column at every position:
Grad-CAM is then exactly the feature map weighted by that column (the CAM),
and needs no gradient at run time.

The `.keras` file stays the source of truth. `model.tflite` is converted from
it after training (`export_lite`); the LiteRT interpreter (ai-edge-litert)
runs it without importing TensorFlow, which alone takes ~680 MB of memory and
seconds to import, so the app can serve predictions and Grad-CAM in a small
memory budget. Tests hold the two runtimes to the same numbers.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from bloodcell.errors import BloodcellError

LITE_FILE = "model.tflite"
KERAS = "keras"
LITE = "lite"
AUTO = "auto"
RUNTIMES = (AUTO, KERAS, LITE)
SERVING_INPUT = "images"
# The interpreter's threads: Streamlit Community Cloud gives an app a share of
# a few cores, and a second thread already gets most of what a third would.
LITE_THREADS = min(2, os.cpu_count() or 1)


def lite_available() -> bool:
    """Whether the LiteRT interpreter (package ai-edge-litert) is installed."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


def serving_function(model, last_conv_layer: str):
    """images -> {features, logits, class_maps}; a plain TensorFlow function of `model`."""
    import keras
    import tensorflow as tf

    net = keras.Model(model.input, [model.get_layer(last_conv_layer).output, model.get_layer("logits").output])
    kernel = model.get_layer("logits").kernel

    def serve(images):
        maps, logits = net(images, training=False)
        return {
            "features": tf.reduce_mean(maps, axis=(1, 2)),
            "logits": logits,
            # (N, h, w, classes): each position's features times each class's weights.
            "class_maps": tf.einsum("nhwk,kc->nhwc", maps, tf.convert_to_tensor(kernel)),
        }

    return net, serve


class KerasRunner:
    """The serving function compiled with tf.function (one trace per model)."""

    def __init__(self, model, last_conv_layer: str):
        import tensorflow as tf

        size = int(model.input_shape[1])
        _, serve = serving_function(model, last_conv_layer)
        # An eager Keras call costs ~10x the arithmetic of one 224-pixel image
        # on two cores; the compiled function does not.
        self._serve = tf.function(serve, input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)])
        self.name = KERAS

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = self._serve(images)
        return out["features"].numpy(), out["logits"].numpy(), out["class_maps"].numpy()


class LiteRunner:
    """The converted model in the LiteRT interpreter; a lock makes it thread-safe."""

    def __init__(self, path: Path, threads: int = LITE_THREADS):
        from ai_edge_litert.interpreter import Interpreter

        try:
            with _native_stderr_silenced():
                self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
                self._run = self._interpreter.get_signature_runner()
                # One call on a blank image: the delegate is set up (and says
                # so on stderr) on the first call, not by the constructor.
                shape = self._run.get_input_details()[SERVING_INPUT]["shape"]
                self._run(**{SERVING_INPUT: np.zeros((1, *shape[1:]), np.float32)})
        except Exception as exc:  # the interpreter raises plain RuntimeError/ValueError
            raise BloodcellError(f"could not load {path}: {type(exc).__name__}: {exc}") from None
        self._lock = threading.Lock()
        self.name = LITE

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self._lock:
            out = self._run(**{SERVING_INPUT: np.ascontiguousarray(images, np.float32)})
            # Copies: the interpreter reuses its output buffers on the next call.
            return np.array(out["features"]), np.array(out["logits"]), np.array(out["class_maps"])


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Keep the interpreter's C++ start-up line ("Created TensorFlow Lite XNNPACK
    delegate") off stderr: it is printed by native code, past Python's sys.stderr."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (some embedded hosts): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def export_lite(model, last_conv_layer: str, path: Path) -> int:
    """Convert `model`'s serving function to a LiteRT flatbuffer at `path`; return its size."""
    import keras
    import tensorflow as tf

    size = int(model.input_shape[1])
    net, serve = serving_function(model, last_conv_layer)
    archive = keras.export.ExportArchive()
    archive.track(net)
    archive.add_endpoint("serve", serve, input_signature=[
        tf.TensorSpec((None, size, size, 3), tf.float32, name=SERVING_INPUT)])
    with tempfile.TemporaryDirectory() as saved:
        archive.write_out(saved, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=["serve"])
        flatbuffer = converter.convert()
    Path(path).write_bytes(flatbuffer)
    return len(flatbuffer)
