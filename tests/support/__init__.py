"""Helpers shared by the unit and integration tests: fakes, fixtures, tiny models, paths."""
