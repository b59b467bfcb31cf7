"""Component types, component states and data items, as tables."""

from __future__ import annotations

from django.db import models


class ComponentType(models.Model):
    """A component class, by its full type name."""

    name = models.CharField(max_length=255, unique=True)

    class Meta:
        app_label = "gitstore"

    def __str__(self) -> str:
        return str(self.name)


class ComponentState(models.Model):
    """One key: type, version, parameters and the states of its inputs."""

    key = models.CharField(max_length=100, unique=True)
    type = models.ForeignKey(ComponentType, on_delete=models.PROTECT, related_name="states")
    version = models.CharField(max_length=255, db_index=True)
    parameters = models.TextField(help_text="YAML")
    description = models.TextField(help_text="component.yaml")
    inputs = models.ManyToManyField("self", symmetrical=False, related_name="outputs",
                                    blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "gitstore"

    def __str__(self) -> str:
        return str(self.key)


class DataItem(models.Model):
    """One attribute of a state: its codec, size, content digest and file."""

    state = models.ForeignKey(ComponentState, on_delete=models.CASCADE, related_name="items")
    attribute = models.CharField(max_length=255)
    codec = models.CharField(max_length=50)
    size = models.BigIntegerField()
    digest = models.CharField(max_length=64, help_text="SHA-256 of the file")
    path = models.CharField(max_length=255, help_text="relative to data_root_dir")
    stored = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "gitstore"
        constraints = [models.UniqueConstraint(fields=["state", "attribute"],
                                               name="gitstore_one_item_per_attribute")]

    def __str__(self) -> str:
        return f"{self.state.key} {self.attribute}"
