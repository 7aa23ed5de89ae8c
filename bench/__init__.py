"""Benchmarks, run as scripts (``.venv/bin/python bench/NAME.py``); a package so that they share
``bench.common`` under one module name."""
