"""One module per external integration, each behind :class:`services.notifier.delivery.Integration`."""
