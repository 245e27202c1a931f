"""Sphinx configuration for the django-oncejob documentation."""

from __future__ import annotations

import sys
from pathlib import Path

# autodoc imports the package from this checkout, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django_oncejob import __version__  # noqa: E402

project = "django-oncejob"
author = "django-oncejob contributors"
copyright = "django-oncejob contributors"
release = __version__
version = __version__

extensions = ["sphinx.ext.autodoc"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"

exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"django-oncejob {release}"
