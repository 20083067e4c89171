"""Classical downscalers: mascon, bilinear, pattern transfer, random forest, LightGBM."""
