"""Deep downscalers: the dynamic soft-constrained CNN and its ablations.

Importing the package registers them in :data:`twsbench.downscaling.contract.DOWNSCALERS`;
torch is needed only to construct and fit them (the ``cnn`` extra).
"""

from twsbench.models import soft_cnn  # noqa: F401
