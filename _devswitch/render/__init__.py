"""Tables and charts: one table model (``table.Table``) and its renderers (text, markdown, HTML, terminal)."""

from .table import Column, Table

__all__ = ["Column", "Table"]
