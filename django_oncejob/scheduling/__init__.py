"""Jobs to due occurrences: APScheduler, its job store, and the executor that claims."""
