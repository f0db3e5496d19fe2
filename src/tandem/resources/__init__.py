"""tandem.resources."""
