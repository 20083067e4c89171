"""Deep downscalers: the dynamic soft-constrained CNN and its ablations."""
