"""Deep downscalers: the dynamic soft-constrained CNN and its ablations.

Importing the package registers them in :data:`suite.downscaler.DOWNSCALERS`; torch is needed
only to construct and fit them (the ``cnn`` extra).
"""

from models import soft_cnn  # noqa: F401
