from __future__ import annotations

from django.apps import AppConfig


class GitstoreConfig(AppConfig):
    name = "gitstore.backends.djangostore"
    label = "gitstore"
    verbose_name = "gitstore cache"
    default_auto_field = "django.db.models.BigAutoField"
