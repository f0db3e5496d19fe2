"""Tandem on Kubernetes: the sidecar injector (a mutating admission webhook).

``annotations`` reads Dapr's pod annotations, ``inject`` turns them into a JSON patch that
adds the runtime and Envoy, ``admission`` answers an AdmissionReview, ``webhook`` serves it
over TLS. All but ``webhook`` are pure functions.
"""
