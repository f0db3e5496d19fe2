"""The distributed lock building block (alpha in Dapr): lock stores and the API's rules."""
