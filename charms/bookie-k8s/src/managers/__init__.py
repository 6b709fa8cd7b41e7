"""Logic of the charm that is tested without ops."""
