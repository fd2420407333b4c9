"""The CSS and JavaScript, shipped inside the package as ``service.static`` (see pyproject.toml)."""
