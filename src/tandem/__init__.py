"""Tandem: a Dapr-compatible runtime with Envoy as the sidecar data plane."""

__version__ = "0.1.0"
# What GET /v1.0/metadata reports as runtimeVersion; SDKs only display it.
RUNTIME_VERSION = "tandem-" + __version__
# The Dapr API this runtime serves, and the official SDK release it is tested with.
DAPR_API_VERSION = "v1.0"
DAPR_SDK_VERSION = "1.19"
