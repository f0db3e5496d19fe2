"""The state building block: the :class:`~.service.StateService` core, the
:class:`~.store.StateStore` contract and its components (``state.sqlite``, ``state.redis``)."""
