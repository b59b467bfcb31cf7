"""The ``gitstore`` command line (installed as the package ``gitstore_cli``)."""
