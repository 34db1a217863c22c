"""bloodcell: white-blood-cell image classification that shows why it decided."""

import os

# TensorFlow's C++ start-up chatter hides the messages users need to see.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bloodcell.config import CLASS_NAMES, NUM_CLASSES
from bloodcell.errors import BloodcellError, ImageReadError

__version__ = "0.1.0"
__all__ = ["CLASS_NAMES", "NUM_CLASSES", "BloodcellError", "ImageReadError", "__version__"]
