"""The HTTP API (FastAPI): integrations, jobs, health and metrics; other routers plug in.

Build it with :func:`arkyra.api.app.create_app`; serve it with ``arkyra api``.
"""
