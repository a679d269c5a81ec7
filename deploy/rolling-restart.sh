#!/bin/sh
# Rolling restart of the gunicorn instances behind nginx on this host, losing no request
# (README, "Rolling restart"). Usage: rolling-restart.sh 8000 8001
#
# For each instance in turn: nginx stops sending it new requests (its upstream line gets `down`,
# nginx reloads gracefully), the requests it holds finish, it restarts (new code, new
# environment), and once its /readyz answers 200 nginx sends it requests again. Stopping a
# gunicorn that nginx still sends to resets the connections waiting in its accept queue, and
# nginx never replays a POST: that is what loses requests otherwise.
#
# UPSTREAM is the file whose `server 127.0.0.1:PORT ...;` lines make nginx's upstream (the
# `upstream usher` block of deploy/nginx.conf, or a file it includes).
set -eu
UPSTREAM=${UPSTREAM:-/etc/nginx/usher-upstream.conf}
NGINX_RELOAD=${NGINX_RELOAD:-"nginx -s reload"}
RESTART=${RESTART:-"systemctl restart usher-web@{port}"}
SETTLE=${SETTLE:-3}   # longer than the slowest request (GUNICORN_TIMEOUT bounds it)

for port in "$@"; do
    sed -i "s/\(server 127\.0\.0\.1:$port[^;]*\);/\1 down;/" "$UPSTREAM"
    $NGINX_RELOAD
    sleep "$SETTLE"
    sh -c "$(echo "$RESTART" | sed "s/{port}/$port/g")"
    tries=0
    until curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz"; do
        tries=$((tries + 1))
        [ "$tries" -lt 120 ] || { echo "instance $port is not ready: left out of nginx" >&2; exit 1; }
        sleep 1
    done
    sed -i "s/\(server 127\.0\.0\.1:$port[^;]*\) down;/\1;/" "$UPSTREAM"
    $NGINX_RELOAD
done
