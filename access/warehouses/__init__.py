"""Enforcement in stores: one module per store kind (``postgresql``), each exposing
``dataset_plan(dataset) -> access.masking.Plan`` and ``store_plan(store) -> Plan``."""
