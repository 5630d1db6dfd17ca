#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "envelope.h"
#include "log.h"

#define WSNODE_VERSION "0.1.0"

#define O(f) offsetof(config, f)

static const cli_def defs[] = {
    {"bind", CLI_STRING, O(bind), "ADDR", "0.0.0.0", "address to listen on"},
    {"port", CLI_INT, O(port), "N", "8080", "TCP port (every worker binds it with SO_REUSEPORT)"},
    {"share-port", CLI_FLAG, O(share_port), NULL, NULL,
     "start even though the port is already served, and share its connections with whoever "
     "serves it (SO_REUSEPORT): for a deliberate hand-over, the old node then draining "
     "(docs/deploy.md). Without it a served port is refused"},
    {"workers", CLI_INT, O(workers), "K", NULL,
     "worker processes (default: 1, or the CPU count with --redis); more than 1 needs --redis, "
     "since workers without a bus would split channels between them"},
    {"echo", CLI_FLAG, O(echo), NULL, NULL, "serve /echo: every message echoed back"},
    {"echo-max-message", CLI_SIZE, O(echo_max_message), "SIZE", "16m",
     "largest message on /echo (close 1009 above)"},
    {"max-message", CLI_SIZE, O(max_message), "SIZE", "64k",
     "largest message on /ws, over all its fragments (close 1009 above)"},
    {"max-data", CLI_SIZE, O(max_data), "SIZE", "32k",
     "largest data value of a pub (err too_large above)"},
    {"max-subs", CLI_INT, O(max_subs), "N", "256", "channels one connection may subscribe"},
    {"max-header-size", CLI_SIZE, O(max_header_size), "SIZE", "8k",
     "largest HTTP request head (431 above)"},
    {"max-headers", CLI_INT, O(max_headers), "N", "64", "most HTTP header lines (431 above)"},
    {"handshake-timeout", CLI_SECONDS, O(handshake_timeout), "SEC", "5",
     "time for TLS and HTTP upgrade before the connection is dropped"},
    {"ping-interval", CLI_SECONDS, O(ping_interval), "SEC", "30",
     "silence from a client before the server pings it"},
    {"idle-timeout", CLI_SECONDS, O(idle_timeout), "SEC", "10",
     "silence after a ping before the connection is dropped (taking queued frames is not silence)"},
    {"sse-ping", CLI_SECONDS, O(sse_ping), "SEC", "15",
     "an SSE stream gets a comment line this often, so proxies do not close it as idle"},
    {"poll-timeout", CLI_SECONDS, O(poll_timeout), "SEC", "25",
     "a long-poll with nothing new is answered (empty) after this long"},
    {"poll-max-batch", CLI_INT, O(poll_max_batch), "N", "100",
     "messages one long-poll answer carries at most (the next poll gets the rest)"},
    {"close-timeout", CLI_SECONDS, O(close_timeout), "SEC", "3",
     "wait for the client's close frame before dropping TCP"},
    {"drain-timeout", CLI_SECONDS, O(drain_timeout), "SEC", "10",
     "on SIGTERM/SIGINT: closes 1001 spread over most of it, then workers exit"},
    {"outbuf-soft", CLI_SIZE, O(outbuf_soft), "SIZE", "1m",
     "queued bytes per connection above which it is a slow consumer"},
    {"outbuf-hard", CLI_SIZE, O(outbuf_hard), "SIZE", "8m",
     "queued bytes per connection that close it at once (any policy)"},
    {"outbuf-soft-seconds", CLI_SECONDS, O(outbuf_soft_seconds), "SEC", "5",
     "time above the soft limit before a slow consumer is closed (policy close)"},
    {"slow-policy", CLI_CUSTOM, O(slow_policy), "close|drop|conflate", "close",
     "slow consumer: close it with 1008, drop its messages and count them, or replace an "
     "unsent message by the newer one on the same channel and count that"},
    {"tls-cert", CLI_STRING, O(tls_cert), "FILE", NULL, "PEM certificate chain: serve wss://"},
    {"tls-key", CLI_STRING, O(tls_key), "FILE", NULL, "PEM private key for --tls-cert"},
    {"origin", CLI_CUSTOM, 0, "ORIGIN", NULL,
     "allow browsers from this Origin only (repeatable; none: any). Clients that send no "
     "Origin are not browsers and are allowed"},
    {"max-connections", CLI_INT, O(max_connections), "N", "0",
     "connections per worker, 503 beyond (0: as many as file descriptors allow)"},
    {"max-conns-per-ip", CLI_INT, O(max_conns_per_ip), "N", "1000",
     "connections one client address may hold on a worker, 429 beyond (0: no limit)"},
    {"ip-connect-rate", CLI_INT, O(ip_connect_rate), "N", "100",
     "new connections a second one client address may open on a worker, bursts of 10 times "
     "that, 429 beyond (0: no limit)"},
    {"limit-loopback", CLI_FLAG, O(limit_loopback), NULL, NULL,
     "apply the per-address limits to 127.0.0.0/8 and ::1 too (a local proxy or load "
     "generator is one address for everyone behind it: off by default)"},
    {"max-msg-rate", CLI_INT, O(max_msg_rate), "N", "1000",
     "messages a second one connection may send, bursts of twice that; beyond, err "
     "rate_limited, and close 1008 when it keeps on (0: no limit)"},
    {"direct-rate", CLI_INT, O(direct_rate), "N", "100",
     "direct messages (send) a second one connection may send, and one may receive, bursts of "
     "twice that; beyond, err rate_limited for the sender, err busy when the recipient's "
     "budget is spent (0: no limit)"},
    {"publish-rate", CLI_INT, O(publish_rate), "N", "10000",
     "POST /publish requests a second per worker, 429 beyond (0: no limit)"},
    {"auth", CLI_CUSTOM, 0, "off|optional|required", "off",
     "JWT authentication on the upgrade: required refuses clients without a valid token (401), "
     "optional lets them in as anonymous"},
    {"jwt-secret", CLI_STRING, O(jwt_secret), "SECRET", NULL, "HS256/384/512 secret"},
    {"jwt-secret-file", CLI_STRING, O(jwt_secret_file), "FILE", NULL,
     "read the HS256/384/512 secret from FILE (keeps it out of ps)"},
    {"jwt-public-key", CLI_STRING, O(jwt_public_key), "FILE", NULL,
     "PEM public key for RS256/384/512 or ES256/384/512 tokens"},
    {"jwt-leeway", CLI_CUSTOM, O(jwt_leeway), "SEC", "30", "clock skew allowed on exp and nbf (0: none)"},
    {"anonymous-sub", CLI_CUSTOM, 0, "PATTERN", NULL,
     "with --auth: channels clients without a token may subscribe to (repeatable; name or "
     "prefix*)"},
    {"anonymous-pub", CLI_CUSTOM, 0, "PATTERN", NULL,
     "with --auth: channels clients without a token may publish to (repeatable)"},
    {"node-id", CLI_STRING, O(node_id), "PREFIX", NULL,
     "node id prefix, public in every client id; workers are PREFIX.wK.<random> (default: "
     "random, n<8 hex>; the log names the host)"},
    RLINK_CLI_DEFS(O(redis), NULL,
                   "Redis for the cluster bus (or a unix socket path): every worker and node on "
                   "it is one pub/sub system"),
    {"static", CLI_STRING, O(static_dir), "DIR", NULL,
     "serve the files under DIR on GET (/ is DIR/index.html), read into memory at start"},
    {"publish-key", CLI_STRING, O(publish_key), "KEY", NULL,
     "enable POST /publish/<channel> for backends, authorized by Authorization: Bearer KEY"},
    {"router-shards", CLI_INT, O(router_shards), "N", "1",
     "wsrouter shards presence is spread over (the routers' --shard i/N); 0: no presence"},
    {"presence-max-members", CLI_INT, O(presence_max_members), "N", "1000",
     "without --redis: a presence answer lists at most this many members, larger channels get "
     "a count (with --redis the router's flag of the same name decides)"},
    {"history-size", CLI_INT, O(history_size), "N", "100",
     "messages of each channel kept for recovery and the history op (0: none; the seq and "
     "epoch are kept all the same)"},
    {"history-memory", CLI_INT, O(history_memory), "N", "100",
     "with --redis: messages of each followed channel every worker keeps in memory, so a "
     "recovery within them costs no Redis read (at most --history-size; 0: none)"},
    {"history-ttl", CLI_INT, O(history_ttl), "SEC", "600",
     "a channel's seq, epoch and history expire this long after its last publish"},
    {"heartbeat", CLI_SECONDS, O(heartbeat), "SEC", "1",
     "interval of the heartbeat each worker sends every router shard"},
    {"router-timeout", CLI_SECONDS, O(router_timeout), "SEC", "2",
     "wait for a presence answer or a direct message's delivery before err unavailable"},
    {"log-level", CLI_LEVEL, O(log_level), "LEVEL", "info", "debug, info, warn or error"},
};

static int custom(void *base, const cli_def *d, const char *v)
{
    config *c = base;
    if (strcmp(d->name, "auth") == 0) {
        if (strcmp(v, "off") == 0)
            c->auth = AUTH_OFF;
        else if (strcmp(v, "optional") == 0)
            c->auth = AUTH_OPTIONAL;
        else if (strcmp(v, "required") == 0)
            c->auth = AUTH_REQUIRED;
        else
            return -1;
        return 0;
    }
    if (strcmp(d->name, "jwt-leeway") == 0) {
        char *end;
        double x = strtod(v, &end);
        if (end == v || *end || !(x >= 0 && x <= 86400))
            return -1;
        c->jwt_leeway = x;
        return 0;
    }
    if (strcmp(d->name, "anonymous-sub") == 0 || strcmp(d->name, "anonymous-pub") == 0) {
        bool sub = d->name[10] == 's';
        int *n = sub ? &c->nanon_sub : &c->nanon_pub;
        if (*n == CONFIG_MAX_PATTERNS || !*v)
            return -1;
        (sub ? c->anon_sub : c->anon_pub)[(*n)++] = v;
        return 0;
    }
    if (strcmp(d->name, "slow-policy") == 0) {
        if (strcmp(v, "close") == 0)
            c->slow_policy = SLOW_CLOSE;
        else if (strcmp(v, "drop") == 0)
            c->slow_policy = SLOW_DROP;
        else if (strcmp(v, "conflate") == 0)
            c->slow_policy = SLOW_CONFLATE;
        else
            return -1;
        return 0;
    }
    if (strcmp(d->name, "origin") != 0)
        return CLI_UNKNOWN; /* a CLI_CUSTOM def this function does not parse */
    if (c->norigins == CONFIG_MAX_ORIGINS)
        return -1;
    c->origins[c->norigins++] = v;
    return 0;
}

static const cli_prog prog = {
    .name = "wsnode",
    .version = WSNODE_VERSION,
    .about = "A wsfan WebSocket node: /ws (client protocol v1), /echo, /healthz on one port.",
    .defs = defs,
    .ndefs = sizeof defs / sizeof defs[0],
    .custom = custom,
};


/* --history-*: in range; the memory window never larger than what Redis keeps. */
static int check_history(config *c)
{
    if (c->history_size < 0 || c->history_size > 100000 || c->history_ttl < 1 ||
        c->history_ttl > 30 * 86400 || c->history_memory < 0) {
        fprintf(stderr, "wsnode: --history-size must be 0-100000, --history-memory at least 0 "
                        "and --history-ttl 1-2592000 (30 days)\n");
        return -1;
    }
    if (c->history_memory > c->history_size)
        c->history_memory = c->history_size; /* more than Redis keeps would never be asked */
    return 0;
}

int config_parse(config *c, int argc, char **argv)
{
    memset(c, 0, sizeof *c);
    int rc = cli_parse(&prog, c, argc, argv);
    if (rc != 0)
        return rc;
    if (c->port < 1 || c->port > 65535) {
        fprintf(stderr, "wsnode: --port must be 1-65535\n");
        return -1;
    }
    if (c->workers == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        c->workers = rlink_opts_enabled(&c->redis) && cpus > 0 ? (int)cpus : 1;
    }
    if (c->workers > 1 && !rlink_opts_enabled(&c->redis)) {
        fprintf(stderr, "wsnode: --workers %d needs --redis: without the bus, workers would split "
                        "channels between them and subscribers on one worker would miss messages "
                        "published on another. Give --redis HOST:PORT, or run --workers 1.\n",
                c->workers);
        return -1;
    }
    if (!c->tls_cert != !c->tls_key) {
        fprintf(stderr, "wsnode: --tls-cert and --tls-key go together\n");
        return -1;
    }
    if (c->outbuf_soft > c->outbuf_hard) {
        fprintf(stderr, "wsnode: --outbuf-soft must not exceed --outbuf-hard\n");
        return -1;
    }
    if (c->max_headers < 1 || c->max_headers > 128 || c->max_header_size < 64) {
        fprintf(stderr, "wsnode: --max-headers must be 1-128 and --max-header-size at least 64\n");
        return -1;
    }
    if (c->max_subs < 1 || c->max_subs > 65535) {
        fprintf(stderr, "wsnode: --max-subs must be 1-65535\n");
        return -1;
    }
    if (c->auth == AUTH_OFF && (c->jwt_secret || c->jwt_secret_file || c->jwt_public_key ||
                                c->nanon_sub || c->nanon_pub)) {
        fprintf(stderr, "wsnode: --jwt-* and --anonymous-* take effect with --auth optional or "
                        "--auth required; without --auth every client may do everything\n");
        return -1;
    }
    if (c->auth != AUTH_OFF && !c->jwt_secret && !c->jwt_secret_file && !c->jwt_public_key) {
        fprintf(stderr, "wsnode: --auth needs --jwt-secret, --jwt-secret-file or --jwt-public-key\n");
        return -1;
    }
    if ((c->jwt_secret != NULL) + (c->jwt_secret_file != NULL) + (c->jwt_public_key != NULL) > 1) {
        fprintf(stderr, "wsnode: give one of --jwt-secret, --jwt-secret-file, --jwt-public-key\n");
        return -1;
    }
    if (c->router_shards > 1024 || c->heartbeat > 3600) {
        fprintf(stderr, "wsnode: --router-shards must be 0-1024 and --heartbeat at most 3600\n");
        return -1;
    }
    if (c->node_id && (strlen(c->node_id) > 64 ||
                       !env_channel_valid((ws_span){c->node_id, strlen(c->node_id)}))) {
        fprintf(stderr, "wsnode: --node-id must be 1-64 bytes of [A-Za-z0-9._:-]: it names Redis "
                        "channels and is part of every client id\n");
        return -1;
    }
    if (check_history(c) < 0)
        return -1;
    if (c->presence_max_members < 1) {
        fprintf(stderr, "wsnode: --presence-max-members must be at least 1\n");
        return -1;
    }
    if (rlink_opts_check(&c->redis, "wsnode") < 0)
        return -1;
    if (c->echo_max_message > (size_t)1 << 31 || c->max_message > (size_t)1 << 31) {
        fprintf(stderr, "wsnode: message limits must be at most 2g\n");
        return -1;
    }
    return 0;
}
