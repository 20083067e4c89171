"""Preparing grids: input files (or the cached twin world) to the identical 0.5° grids every
downscaler sees (:class:`twsbench.prepare.grids.Grids`), cached by content."""
