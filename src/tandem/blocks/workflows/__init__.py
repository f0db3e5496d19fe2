"""Durable workflows: the durable-task backend the official SDK's worker and client call."""
