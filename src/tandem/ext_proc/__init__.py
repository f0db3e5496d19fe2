"""tandem.ext_proc."""
