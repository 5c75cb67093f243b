"""The match engine: the only package that imports splink or duckdb (see interface.py)."""
