"""The downscaler contract: what the harness calls, the registry, and the ``+conserve``
wrapper. The built-in downscalers (``twsbench.baselines``, ``twsbench.models``) and plug-ins
implement it."""
