"""The Jobs API: the app's jobs kept by the control plane's scheduler, triggers to the app."""
