"""HTTP handlers: each parses its input, makes one core call and renders the answer."""
