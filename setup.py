"""Packages: everything under eebguard/, plus the top-level data/ (testbed, tokenizer, judge, examples)
installed as ``eebguard.data``, which package discovery cannot see from pyproject.toml alone."""
from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["eebguard", "eebguard.*"]), "eebguard.data"], package_dir={"eebguard.data": "data"})
