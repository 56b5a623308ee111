"""Prefect orchestration of the build (the only package that imports Prefect)."""
