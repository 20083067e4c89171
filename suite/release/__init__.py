"""Releasing: the chosen model refitted on every month with GRACE, written as the monthly 0.5°
product, and its validation."""
