"""Evaluation measures for rendered talking portraits."""
