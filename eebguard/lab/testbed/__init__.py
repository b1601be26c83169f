"""Building and training the testbed model, its judge and the SD-shaped pipelines built from published configs."""
