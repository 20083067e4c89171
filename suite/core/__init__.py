"""Foundations every stage shares: errors, the cache and atomic writes, the array backend and
its kernels, the 0.5° grid and the mascon operator, months and their splits, domains, the land
mask, the run configuration, registries, threads and timing. Nothing here imports a stage."""
