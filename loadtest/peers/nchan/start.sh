#!/bin/bash
# nchan peer: nginx + Nchan (Debian packages), one worker, in the foreground; SIGTERM stops it.
#   ws://127.0.0.1:N/sub/CH     subscriber (WebSocket; EventSource on the same URL)
#   http://127.0.0.1:N/lp/CH    long-poll subscriber, fed by POST /pubkeep/CH (keeps 100)
#   POST http://127.0.0.1:N/pub/CH   publish the request body;  ws://127.0.0.1:N/pubws/CH   publish each frame
# Usage: start.sh --port N [--redis HOST:PORT]   (--port2 is accepted and ignored)
port=8080 redis=
while [ $# -gt 0 ]; do
    case $1 in
        --port) port=$2; shift 2 ;;
        --redis) redis=$2; shift 2 ;;
        --port2) shift 2 ;;
        *) echo "usage: $0 --port N [--redis HOST:PORT]" >&2; exit 2 ;;
    esac
done

nchan_module() { dpkg -L libnginx-mod-nchan 2>/dev/null | grep '/ngx_nchan_module\.so$'; }
if ! command -v nginx >/dev/null || [ -z "$(nchan_module)" ]; then
    pkgs="nginx-light libnginx-mod-nchan"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086 # a list of packages
    apt-get install -y $pkgs || { apt-get update && apt-get install -y $pkgs; } || exit 1
fi
module=$(nchan_module)

nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=65536
dir=$(mktemp -d /tmp/wsfan-nchan.XXXXXX) || exit 1
if [ -n "$redis" ]; then
    # nostore: Redis only carries the pub/sub traffic between Nchan servers; no message storage.
    redis_upstream="upstream redis_bus { nchan_redis_server redis://$redis; nchan_redis_storage_mode nostore; }"
    redis_pass="nchan_redis_pass redis_bus;"   # not inherited from http {}: one per location
fi
cat > "$dir/nginx.conf" <<CONF
load_module $module;
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile $nofile;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $nofile; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    # Fan-out only: no history for late subscribers (see README).
    nchan_message_buffer_length 0;
    $redis_upstream
    server {
        listen 127.0.0.1:$port;
        location ~ "^/sub/([A-Za-z0-9._:-]{1,200})$" {
            nchan_subscriber websocket eventsource;
            nchan_subscriber_first_message newest;
            nchan_channel_id \$1;
            $redis_pass
        }
        location ~ "^/pub/([A-Za-z0-9._:-]{1,200})$" {
            nchan_publisher http;
            nchan_channel_id \$1;
            $redis_pass
        }
        # Long-poll subscribers need the messages kept between their polls: their own
        # publisher location keeps the last 100 of each channel (the others keep none).
        location ~ "^/pubkeep/([A-Za-z0-9._:-]{1,200})$" {
            nchan_publisher http;
            nchan_message_buffer_length 100;
            nchan_channel_id \$1;
            $redis_pass
        }
        location ~ "^/lp/([A-Za-z0-9._:-]{1,200})$" {
            nchan_subscriber longpoll;
            nchan_subscriber_first_message newest;
            nchan_channel_id \$1;
            $redis_pass
        }
        location ~ "^/pubws/([A-Za-z0-9._:-]{1,200})$" {
            nchan_publisher websocket;
            nchan_channel_id \$1;
            $redis_pass
        }
        location = /healthz { return 200 "ok\n"; }
    }
}
CONF

nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; stopping=1' TERM INT
wait $pid
rc=$?
[ -n "$stopping" ] && { wait $pid; rc=$?; }   # the trap interrupted the first wait
[ $rc -eq 0 ] || [ $rc -eq 143 ] || cat "$dir/error.log" >&2
rm -rf "$dir"
exit $rc
