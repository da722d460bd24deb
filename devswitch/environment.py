"""Library versions and the build of TensorFlow: facts recorded with every result."""

from __future__ import annotations

import platform
import sys



def versions() -> dict:
    import keras
    import numpy
    import tensorflow as tf

    build = tf.sysconfig.get_build_info()
    return {
        "devswitch": sys.modules["devswitch"].__version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cuda_build": bool(build.get("is_cuda_build", False)),
        "cuda": build.get("cuda_version"),
        "cudnn": build.get("cudnn_version"),
    }
