"""The configuration building block: read configuration items and follow their changes."""
