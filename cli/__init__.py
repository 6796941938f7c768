"""The `specialist` command line."""
