"""MLflow: where runs go, and what a pipeline run records."""
