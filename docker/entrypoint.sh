#!/bin/sh
# One entrypoint, three roles:
#   web     apply migrations (only this role migrates), then serve with gunicorn
#   worker  wait until migrations are applied, then run a django-q2 cluster
#   manage  any manage.py command, e.g. `manage createsuperuser`
set -eu

case "${1:-web}" in
  web)
    python manage.py migrate --noinput
    exec gunicorn config.wsgi:application \
      --bind "0.0.0.0:${PORT:-8000}" \
      --workers "${WEB_CONCURRENCY:-3}" \
      --timeout 60 \
      --access-logfile - \
      --forwarded-allow-ips "*"
    ;;
  worker)
    # Workers never migrate: they wait for the web container to finish.
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
