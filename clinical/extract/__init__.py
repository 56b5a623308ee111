"""Extractors: report text to RadGraph-schema entities and relations (see schemas/extraction.py)."""
