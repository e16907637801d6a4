#!/bin/sh
# Shared by master.sh, backup.sh and fault.sh: run one `docker compose` action on
# $COMPOSE_FILE and log one line about it on stdout (fo forwards hook output to its
# log under the router's name). Exits non-zero when the action fails, so that fo
# counts and logs the failure.
#
# Usage: compose.sh up|down
set -u

action=${1:?usage: compose.sh up|down}
router=${FO_ROUTER:-?}
state=${FO_STATE:-?}
old=${FO_OLD_STATE:-?}

if [ -z "${COMPOSE_FILE:-}" ]; then
    echo "fo hook ($router $old -> $state): COMPOSE_FILE is not set; nothing to do" >&2
    exit 2
fi

case $action in
    up) set -- up -d ;;
    down) set -- down ;;
    *) echo "compose.sh: unknown action $action" >&2; exit 2 ;;
esac

if docker compose -f "$COMPOSE_FILE" "$@"; then
    echo "fo hook ($router $old -> $state): docker compose $* on $COMPOSE_FILE: ok"
else
    rc=$?
    echo "fo hook ($router $old -> $state): docker compose $* on $COMPOSE_FILE: failed with exit $rc"
    exit "$rc"
fi
