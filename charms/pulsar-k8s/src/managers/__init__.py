"""Logic of the charm that is tested without ops: rendering, quorum and bring-up decisions."""
