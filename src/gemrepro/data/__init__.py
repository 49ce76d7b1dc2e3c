"""Data: reading and writing the papers' formats, QM7-X-style sampling and labelling, splits."""

from gemrepro.data.formats import format_summary, read, summarize, write_qm7x

__all__ = ["read", "write_qm7x", "summarize", "format_summary"]
