"""tandem.xds."""
