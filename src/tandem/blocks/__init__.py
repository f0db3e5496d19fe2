"""tandem.blocks."""
