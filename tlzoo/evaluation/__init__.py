"""Metrics, confidence intervals and the plots a run draws."""
