"""Classical downscalers: mascon, bilinear, pattern transfer, WaterGAP's anomaly, per-mascon
regression, random forest, LightGBM.

Importing the package registers them in :data:`suite.downscaler.DOWNSCALERS`.
"""

# the order of registration, simplest first, is the default run's order
from baselines import simple  # noqa: F401, I001
from baselines import regression  # noqa: F401
from baselines import learned  # noqa: F401
