"""Settings to jobs: the ``JOBS`` setting parsed and checked, each job's trigger built."""
