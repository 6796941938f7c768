"""The vocabulary every stage shares: task data, prompt format, adapter manifest, typed configs, base models.

Stages (training/, eval/, service/) import from here and never from each other's internals.
"""

__version__ = "0.1.0"
