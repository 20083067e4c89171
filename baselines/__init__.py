"""Classical downscalers: mascon, bilinear, pattern transfer, random forest, LightGBM.

Importing the package registers them in :data:`suite.downscaler.DOWNSCALERS`.
"""

from baselines import learned, simple  # noqa: F401
