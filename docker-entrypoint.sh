#!/bin/sh
# The container's entrypoint: migrate (if asked), then become gunicorn.
#
# With arguments it runs them instead, in the same environment:
#   docker run IMAGE flask --app diary doctor
#
# MIGRATE_ON_START=true runs the migrations first, under a PostgreSQL advisory
# lock so that several instances starting together migrate exactly once.
set -eu

# Relative paths (gunicorn.conf.py, migrations/) are next to this script.
cd "$(dirname "$0")"

if [ "$#" -gt 0 ]; then
    exec "$@"
fi

case "$(printf '%s' "${MIGRATE_ON_START:-false}" | tr '[:upper:]' '[:lower:]')" in
    1 | true | yes | on)
        flask --app diary db-upgrade-locked
        ;;
    0 | false | no | off | "") ;;
    *)
        echo "MIGRATE_ON_START must be true or false, got '${MIGRATE_ON_START}'" >&2
        exit 64
        ;;
esac

# exec: gunicorn replaces this shell, so the platform's
# SIGTERM reaches it directly and it shuts down gracefully.
exec gunicorn -c gunicorn.conf.py wsgi:app
