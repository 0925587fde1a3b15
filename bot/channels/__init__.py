"""Channel adapters: one module per platform behind the ``Channel`` contract."""
