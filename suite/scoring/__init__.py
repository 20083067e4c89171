"""Scoring: metrics, the long scores table, significance, the calibrated uncertainty and the
leaderboards. Scoring code is the only code that reads the twin's truth."""
