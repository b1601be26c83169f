"""The research side: EEB attacks, testbed training, zoo building and measurement, detector evaluation.

The lab imports the product (eebguard.*); the product never imports the lab (tests/contract/test_import_graph.py).
"""
