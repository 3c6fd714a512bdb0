"""Shared fixtures. Real processes on loopback live in tests/e2e/conftest.py."""
