"""Minimal, span-local clinical edits, each verified by re-extraction before it is kept."""
