"""Fakes and example claims that exercise the claims engine without training real models."""
