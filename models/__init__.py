"""Deep downscalers: the dynamic soft-constrained CNN and its ablations.

Importing the package registers them in :data:`suite.downscaler.DOWNSCALERS`; torch is needed
only to construct and fit them (the ``cnn`` extra).
"""

# the classical downscalers register first, whichever package a program imports first
import baselines  # noqa: F401
from models import soft_cnn  # noqa: F401
