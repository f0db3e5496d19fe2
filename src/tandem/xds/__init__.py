"""tandem.xds: the control plane. Envoys connect over ADS; each gets resources computed from
the live mesh.

Pipeline (each step pure or I/O-free except the last two):
  ``ir`` (Sidecar, Mesh) → ``translate`` (Envoy protos per sidecar) → ``cache`` (versioned
  snapshots, watches) → ``stream`` (SotW ADS state machine) → ``server`` (grpc.aio ADS) ←
  ``registry`` (sidecars learned from streams, admitted by ``identity``: enrolment
  credentials checked, CSRs signed by ``ca``, certificates rotated at half-life) — wired
  together by ``controlplane`` and run by ``python -m tandem.xds --home DIR [--config FILE]``.
  Security design: ``docs/design/mesh-security.md``.
"""
