"""MIND Explorer core library: data -> distill -> kb/index -> app."""

__version__ = "0.1.0"
