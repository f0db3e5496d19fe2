"""Tracing, metrics and logs of a sidecar (README "Observability").

``export``: where spans go, from the Configuration's ``spec.tracing`` (shared by the
control plane's Envoy translation and the runtime's exporter, so both send to one place).
``tracing``: the runtime's own spans, children of Envoy's.
"""
