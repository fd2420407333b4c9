"""The core: tokens, keys, sessions, passwords, CSRF and sign-in rules as plain Python; never imports aiohttp."""
