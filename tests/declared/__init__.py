"""An app whose ``jobs`` module declares jobs with ``@job``, for the tests that install it."""
