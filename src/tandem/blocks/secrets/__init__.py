"""The secrets building block: secret stores, the API's scopes, and secretKeyRef resolution."""
