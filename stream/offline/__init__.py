"""Offline training and evaluation of registry versions from stream files."""
