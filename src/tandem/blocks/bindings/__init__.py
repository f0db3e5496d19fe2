"""The bindings building block: output bindings the app calls, input bindings that call the app."""
