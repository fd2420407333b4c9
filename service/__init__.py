"""Cookie sessions over JWT for aiohttp."""

__version__ = "0.1.0"
