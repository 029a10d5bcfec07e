"""Executor base class, option parsing and the executor registry."""
