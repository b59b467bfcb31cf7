"""The Django app behind :class:`~gitstore.backends.django.DjangoORMDataStore`.

Inside a Django project: add ``"gitstore.backends.djangostore"`` to ``INSTALLED_APPS`` and run
``manage.py migrate``.
"""
