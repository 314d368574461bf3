"""Reporting: a judge run as GitHub-flavoured Markdown with PNG charts.

    fab eval.report

``report`` (the document), ``markdown`` (cells, numbers, tables), ``charts`` (the PNGs).
"""
