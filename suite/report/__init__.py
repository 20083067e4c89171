"""Reporting: the comparison report (Markdown, HTML, figures), built only from a run folder's
saved files, and a headless-Chromium check of its page."""
