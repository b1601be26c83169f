"""Packages: everything under eebguard/, plus the top-level data/ (testbed, tokenizer, judge, examples)
installed as ``eebguard.data``, which package discovery cannot see from pyproject.toml alone. Data-only
folders are listed as namespace packages so setuptools ships their files without a warning each."""
from setuptools import find_namespace_packages, find_packages, setup

packages = [*find_packages(include=["eebguard", "eebguard.*"]), "eebguard.reports.templates", "eebguard.data",
            *(f"eebguard.data.{p}" for p in find_namespace_packages(where="data"))]
setup(packages=packages, package_dir={"eebguard.data": "data"})
