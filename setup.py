"""Kept for editable installs with older pip; the whole build configuration is pyproject.toml."""

from setuptools import setup

setup()
