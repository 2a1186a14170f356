#!/bin/sh
# One entrypoint, four roles:
#   migrate  apply migrations, then exit (compose: a one-off service the others wait for;
#            Kubernetes: a Job). Only this role migrates: two web replicas never race.
#   web      serve with gunicorn
#   worker   wait until migrations are applied, then run a django-q2 cluster
#   manage   any manage.py command, e.g. `manage createsuperuser`
set -eu

case "${1:-web}" in
  migrate)
    python manage.py migrate --noinput
    # The table of a database cache (CACHE_URL=dbcache://…); nothing for other caches.
    exec python manage.py createcachetable
    ;;
  web)
    # gunicorn believes X-Forwarded-Proto (HTTPS) only from FORWARDED_ALLOW_IPS, which
    # it reads from the environment (its default: 127.0.0.1,::1). Name the proxy there,
    # never "*": anyone reaching this port directly could then claim HTTPS.
    exec gunicorn config.wsgi:application \
      --bind "${GUNICORN_BIND:-0.0.0.0:${PORT:-8000}}" \
      --workers "${WEB_CONCURRENCY:-3}" \
      --timeout 60 \
      --access-logfile -
    ;;
  worker)
    # Compose starts workers after the migrate service; elsewhere (a Kubernetes Job runs
    # the migrations) nothing orders the start, so wait for them here.
    until python manage.py migrate --check >/dev/null 2>&1; do
      echo "worker: waiting for migrations" >&2
      sleep 3
    done
    exec python manage.py qcluster
    ;;
  manage)
    shift
    exec python manage.py "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
