"""The cryptography building block: key providers, Dapr's encryption scheme v1, subtle ops."""
