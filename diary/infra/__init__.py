"""Infrastructure: what the rules and the web layer stand on.

Photo storage (S3 or a local folder), the JSON request log, the database's rotated
password and least-privilege role, the migration lock, the throttles' counters
and gunicorn's worker. Modules here use the database handle, the models and the
small helpers at the package root (timestamps, inputs), never the web layer or
the rules: those import infra, not the other way round.
"""
