/* config: wsnode's command line. One table drives parsing and --help, so the two never
 * disagree; docs/configuration.md repeats it. */
#ifndef CONFIG_H
#define CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "rlink.h"

#define CONFIG_MAX_ORIGINS 32
#define CONFIG_MAX_PATTERNS 32

enum auth_mode { AUTH_OFF, AUTH_OPTIONAL, AUTH_REQUIRED };

enum slow_policy { SLOW_CLOSE, SLOW_DROP, SLOW_CONFLATE };

typedef struct config {
    const char *bind;
    int port;
    int workers; /* 0 until parsed: then 1, or the CPU count once a bus is configured */
    bool echo;
    bool share_port; /* --share-port: join listeners already on the port (a hand-over) */
    size_t echo_max_message;
    size_t max_message;
    size_t max_data;
    int max_subs;
    size_t max_header_size;
    int max_headers;
    double handshake_timeout;
    double ping_interval;
    double idle_timeout;
    double close_timeout;
    double sse_ping; /* seconds between the comments that keep an SSE stream alive */
    double poll_timeout; /* seconds a long-poll waits for a message */
    int poll_max_batch;  /* messages one long-poll answer carries at most */
    double drain_timeout;
    size_t outbuf_soft;
    size_t outbuf_hard;
    double outbuf_soft_seconds;
    int slow_policy;
    const char *tls_cert;
    const char *tls_key;
    const char *origins[CONFIG_MAX_ORIGINS];
    int norigins;
    int max_connections; /* per worker; 0: as many as file descriptors allow */
    const char *node_id;
    rlink_opts redis; /* --redis, --redis-user, --redis-password, --redis-prefix */
    const char *publish_key;
    const char *static_dir; /* --static: files served on GET */
    int router_shards;     /* 0: no presence traffic */
    double heartbeat;      /* seconds between heartbeats to every router shard */
    double router_timeout; /* presence and send answers wait this long */
    int max_conns_per_ip, ip_connect_rate, max_msg_rate, publish_rate, direct_rate;
    int presence_max_members; /* without --redis: larger channels get a count only */
    int history_size;         /* messages kept per channel (0: none) */
    int history_memory;       /* with a bus: messages each worker keeps per followed channel */
    int history_ttl;          /* seconds a channel's seq, epoch and history outlive its last publish */
    bool limit_loopback;
    int auth;
    const char *jwt_secret, *jwt_secret_file, *jwt_public_key;
    double jwt_leeway;
    const char *anon_sub[CONFIG_MAX_PATTERNS], *anon_pub[CONFIG_MAX_PATTERNS];
    int nanon_sub, nanon_pub;
    int log_level;
} config;

/* Fills c from argv (defaults first). Returns 0 to run, 1 when --help or --version printed
 * what was asked, or -1 after printing an error to stderr. */
int config_parse(config *c, int argc, char **argv);

#endif
