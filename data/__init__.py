"""Shipped data (tokenizer, testbed base, examples, detector); installed as the package eebguard.data."""
