"""Tests of the Spark offline engine."""
