"""The bundled model factories (``alexnet``, ``small_cnn``, ``mlp``), as ``devswitch compare NAME`` builds them."""

from _devswitch.models import alexnet, mlp, small_cnn

__all__ = ["alexnet", "mlp", "small_cnn"]
