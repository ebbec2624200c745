#!/bin/sh
# The container's entrypoint: migrate (if asked), then become gunicorn.
#
# With arguments it runs them instead, in the same environment:
#   docker run IMAGE flask --app diary doctor
#
# MIGRATE_ON_START=true runs the migrations first, under a PostgreSQL advisory
# lock so that several instances starting together migrate exactly once. The
# deploy guide runs them as a one-off task instead (deploy/README.md): while an
# instance migrates it does not listen, and a health check may give up on it.
#
# MIGRATION_DB_SECRET: the schema owner's secret (JSON, as DB_SECRET), used for
# the migration only. The service itself logs in as a role that may not change
# the schema; this variable is removed before gunicorn starts.
set -eu

# Relative paths (gunicorn.conf.py, migrations/) are next to this script.
cd "$(dirname "$0")"

if [ "$#" -gt 0 ]; then
    exec "$@"
fi

# Run a command in the background and wait for it, passing on SIGTERM and SIGINT.
# In the foreground the shell would hold the signal until the command finished:
# a platform stopping the container during a long migration would wait for it,
# then SIGKILL us. A background command of a non-interactive shell ignores
# SIGINT, so both signals reach it as SIGTERM.
run_forwarding_signals() {
    child=
    stopping=
    trap 'stopping=1; interrupted=1; [ -z "$child" ] || kill -TERM "$child" 2>/dev/null || true' TERM INT
    "$@" &
    child=$!
    # A signal that came before $child was known is passed on now.
    [ -z "$stopping" ] || kill -TERM "$child" 2>/dev/null || true
    status=
    while :; do
        interrupted=
        code=0
        wait "$child" || code=$?
        # 127: nothing left to wait for, as a signal came just after wait had
        # returned the command's status; that status stands.
        if [ -n "$status" ] && [ "$code" -eq 127 ]; then
            break
        fi
        status=$code
        # A trapped signal makes wait return early (128 + the signal) while the
        # command may still run, or has ended unreported: waiting on it again
        # gives the command's own status.
        [ -n "$interrupted" ] || break
    done
    trap - TERM INT
    # The platform asked us to stop: never go on to start the server.
    if [ -n "$stopping" ] && [ "$status" -eq 0 ]; then
        status=143
    fi
    return "$status"
}

migrate() {
    if [ -n "${MIGRATION_DB_SECRET:-}" ]; then
        if [ -n "${DATABASE_URL:-}" ]; then
            echo "MIGRATION_DB_SECRET cannot be combined with DATABASE_URL, which would win over it" >&2
            exit 64
        fi
        # The owner's secret stands in for the service's credentials for this one command.
        run_forwarding_signals env -u DB_USER -u DB_PASSWORD -u DB_SECRET_ARN \
            DB_SECRET="$MIGRATION_DB_SECRET" flask --app diary db-upgrade-locked
    else
        run_forwarding_signals flask --app diary db-upgrade-locked
    fi
}

case "$(printf '%s' "${MIGRATE_ON_START:-false}" | tr '[:upper:]' '[:lower:]')" in
    1 | true | yes | on)
        status=0
        migrate || status=$?
        if [ "$status" -ne 0 ]; then
            echo "migration failed or was stopped (exit status $status); not starting the server" >&2
            exit "$status"
        fi
        ;;
    0 | false | no | off | "") ;;
    *)
        echo "MIGRATE_ON_START must be true or false, got '${MIGRATE_ON_START}'" >&2
        exit 64
        ;;
esac

# The owner's credentials never reach the server.
unset MIGRATION_DB_SECRET

# exec: gunicorn replaces this shell, so the platform's
# SIGTERM reaches it directly and it shuts down gracefully.
exec gunicorn -c gunicorn.conf.py wsgi:app
