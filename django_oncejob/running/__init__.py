"""An occurrence from its claim to its recorded ending: fence, run, record."""
