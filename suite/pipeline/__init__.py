"""The whole benchmark run (prepare, fit, score, report) and its scaling measurement: the
orchestration above every stage."""
