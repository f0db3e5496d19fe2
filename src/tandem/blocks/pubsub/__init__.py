"""The pub/sub building block: brokers, CloudEvents, publishing, subscriptions."""
