"""kerasrecon: GAN reconstruction of undersampled MRI with TensorFlow/Keras.

The library never prints or exits; it logs and raises. Heavy submodules (TensorFlow models,
training) are imported lazily by the caller: ``from kerasrecon.models import generator``.
"""

__version__ = "0.18.0"

from kerasrecon import tf_import  # noqa: E402

tf_import.install()  # TensorFlow's start-up lines are held back whoever imports it (KERASRECON_TF_LOGS=1 keeps them)

from kerasrecon.api import Reconstructor  # noqa: E402  (NumPy-only import; TensorFlow loads on use)
from kerasrecon.pretrained import pretrained_models  # noqa: E402

__all__ = ["Reconstructor", "pretrained_models", "__version__"]
