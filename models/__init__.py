"""Deep downscalers: the dynamic soft-constrained CNN and its ablations.

Importing the package registers them in :data:`suite.downscaler.DOWNSCALERS` (needs torch).
"""

from models import soft_cnn  # noqa: F401
