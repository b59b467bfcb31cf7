"""Git hooks for a code repository (installed by ``gitstore hooks install``)."""
