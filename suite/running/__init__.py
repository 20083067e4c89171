"""Running: what a config runs (the plan), each (world, model, seed) fit as a task, in-process
or on a Dask cluster, and the run folder's tables."""
