"""The HTML templates, shipped inside the package as ``service.templates`` (see pyproject.toml)."""
