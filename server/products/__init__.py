"""The business products' template files, and their loader."""
