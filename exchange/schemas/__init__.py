"""Pydantic models at the HTTP edge only, one per direction (``...Create``, ``...Public``)."""
