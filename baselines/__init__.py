"""Classical downscalers: mascon, bilinear, pattern transfer, WaterGAP's anomaly, per-mascon
regression, random forest, LightGBM.

Importing the package registers them in :data:`twsbench.downscaling.contract.DOWNSCALERS`.
"""

# the order of registration, simplest first, is the default run's order
from twsbench.baselines import simple  # noqa: F401, I001
from twsbench.baselines import regression  # noqa: F401
from twsbench.baselines import learned  # noqa: F401
