"""Tests of radnerf.eval."""
