"""The instances together: heartbeats, run-now and pause, missed occurrences, the clock."""
