"""The aiohttp side: the app, its request pipeline, routes, cookies and handlers."""
