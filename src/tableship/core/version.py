"""The package version, in one place every layer may import (the package root imports the
whole library, so importing ``__version__`` from there would pull every layer in)."""

__version__ = "0.1.0"
