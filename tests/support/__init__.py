"""What the tests share, one module per job; conftest.py files only define fixtures.

- ``ports``: free TCP ports on 127.0.0.1.
- ``redis_server``: real redis-server processes, started and ended by PID.
- ``redis_groups``: a Redis Cluster and a Sentinel group built from them.
- ``cli``: the command line as an operator runs it.
- ``servers``: the service as a child process, and waiting for children to be ready.
- ``nginx``: the nginx deployment's config, certificate and second app.
- ``browser``: Debian's Chromium through Playwright, and the page the browser tests serve.
- ``webauthn``: virtual authenticators in Chromium, and the service on http://localhost for passkeys.
- ``binaries``: a missing binary skips locally and fails under ``CI=true``.
- ``sign_in``: signing in over HTTP as a script or a form would, and the CSRF tokens it yields.
- ``cookies``: reading, copying and rewriting a client's cookies.
- ``tokens``: access tokens signed by hand, to forge what PyJWT would refuse to write.
- ``raw_http``: exact request bytes on a socket.
- ``metrics``: scraping ``/metrics`` and reading its samples.
"""
