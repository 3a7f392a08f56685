"""Identifier algorithms and row rules, each producing stable rejection codes."""
