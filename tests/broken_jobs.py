"""A job module that fails while it is imported, as a module with a bug would."""

from __future__ import annotations

raise RuntimeError("broken on purpose")
