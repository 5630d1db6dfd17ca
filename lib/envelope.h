/* envelope: client protocol v1 messages (docs/protocol.md) in JSON: parsing client requests
 * and writing server frames. Pure: no I/O, no allocation. `data` stays a verbatim span of the
 * input and is copied byte for byte into what subscribers receive. */
#ifndef ENVELOPE_H
#define ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ws_http.h"

#define ENV_CHANNEL_MAX 200 /* channel names are 1..200 bytes of [A-Za-z0-9._:-] */
#define ENV_ID_MAX 64       /* longest request id echoed back */
#define ENV_USER_MAX 64     /* user ids a client names itself (?user=): [A-Za-z0-9._:@-] */

typedef enum env_op {
    ENV_OP_NONE = 0,
    ENV_OP_SUB,
    ENV_OP_UNSUB,
    ENV_OP_PUB,
    ENV_OP_PRESENCE,
    ENV_OP_SEND,
    ENV_OP_HISTORY,
} env_op;

typedef struct env_req {
    env_op op;
    ws_span ch;    /* channel (validated when the op needs one) */
    ws_span id;    /* the request id verbatim (a JSON number or string); n == 0 when absent */
    ws_span data;  /* pub/send: the data value verbatim */
    ws_span to;    /* send: target client id (raw string contents) */
    bool has_since;
    uint64_t since; /* sub: resume after this seq */
    ws_span epoch;  /* sub: ... in this epoch (raw string contents; n == 0: the current one) */
    bool events;    /* sub: also receive join/leave events */
    bool count_only; /* presence: answer the count, not the members */
    bool has_limit;
    uint32_t limit;  /* history: the last `limit` messages */
} env_req;

/* Error words sent in {"op":"err","code":...}. */
#define ENV_ERR_BAD_JSON "bad_json"       /* not one JSON object */
#define ENV_ERR_BAD_OP "bad_op"           /* op missing or unknown */
#define ENV_ERR_BAD_CHANNEL "bad_channel" /* channel missing or not a valid name */
#define ENV_ERR_BAD_REQUEST "bad_request" /* a field missing or of the wrong type */
#define ENV_ERR_TOO_LARGE "too_large"     /* data over the configured limit */

/* Parses one client request from the JSON text s[0..n), which must be valid UTF-8 already.
 * Returns 0, or -1 with *err set to an ENV_ERR_ word and *why to a static explanation; r->id is
 * filled whenever the id could be read, so the error can name the request. max_data limits the
 * data span (0: none). */
int env_parse(const char *s, size_t n, size_t max_data, env_req *r, const char **err,
              const char **why);

/* True if c is a valid channel name. */
bool env_channel_valid(ws_span c);

/* True if u is a user id a client may name itself: 1..64 bytes of [A-Za-z0-9._:@-]. */
bool env_user_valid(ws_span u);

/* Bytes env_write_msg needs for a channel of ch_len and data of data_len. */
size_t env_msg_size(size_t ch_len, size_t data_len);

/* Exact length env_write_msg writes for these sizes and this seq. */
size_t env_msg_len(size_t ch_len, uint64_t seq, size_t data_len);

/* Writes {"op":"msg","ch":..,"seq":..,"data":..} into out (env_msg_size bytes) and returns the
 * length written. ch must be a valid channel name and data valid JSON. */
size_t env_write_msg(char *out, ws_span ch, uint64_t seq, ws_span data);

/* Writes small replies into out[0..cap); each returns the length, or 0 if it does not fit.
 * id.n == 0 leaves the id out. Strings are escaped as JSON needs. */
size_t env_write_hello(char *out, size_t cap, const char *client, const char *node);
size_t env_write_ack(char *out, size_t cap, ws_span id, bool has_seq, uint64_t seq);
size_t env_write_err(char *out, size_t cap, ws_span id, const char *code, const char *reason);

/* A channel's position: the last seq published and the epoch it belongs to. */
typedef struct env_pos {
    uint64_t seq;
    ws_span epoch;
} env_pos;

/* {"op":"ack","id":..,"seq":S,"epoch":"E"[,"recovered":true|false]}: the ack of a sub, with
 * the channel's position; recovered < 0 leaves it out (no since was asked). */
size_t env_write_sub_ack(char *out, size_t cap, ws_span id, env_pos pos, int recovered);

/* A history answer: {"op":"history","id":..,"ch":..,"seq":S,"epoch":"E","messages":[ (the
 * id left out when id.n == 0, the op too when op is false: GET /history); then each
 * env_write_history_item (first: no comma), then "]}". */
size_t env_write_history_head(char *out, size_t cap, bool op, ws_span id, ws_span ch, env_pos pos);
/* {"seq":N,"data":..} (data valid JSON), with a comma before it unless first. */
size_t env_write_history_item(char *out, size_t cap, bool first, uint64_t seq, ws_span data);

/* {"op":"reset","ch":..,"epoch":"E","seq":S}: the channel's history was lost; S is the
 * position in the new epoch E before its next message. */
size_t env_write_reset(char *out, size_t cap, ws_span ch, env_pos pos);

/* Presence and direct messages (docs/protocol.md); each returns the length, or 0 if it does not
 * fit in out[0..cap). Strings are escaped; data must be valid JSON.
 * {"op":"msg","from":..,"data":..}                          a direct message
 * {"op":"join"|"leave","ch":..,"client":..,"user":..}       one presence event
 * {"op":"presence_overflow","ch":..,"joins":J,"leaves":L}   events beyond the rate cap
 * {"op":"presence","id":..,"ch":..,"count":N[,"members":[   head of a presence answer; with
 *   members, each env_write_member (first: no comma) and then "]}" follow; without, "}" */
size_t env_write_direct(char *out, size_t cap, const char *from, ws_span data);
size_t env_write_event(char *out, size_t cap, bool left, ws_span ch, const char *client,
                       const char *user);
size_t env_write_overflow(char *out, size_t cap, ws_span ch, uint64_t joins, uint64_t leaves);
size_t env_write_presence_head(char *out, size_t cap, ws_span id, ws_span ch, uint64_t count,
                               bool members);
size_t env_write_member(char *out, size_t cap, bool first, const char *client, const char *user,
                        const char *node);

#endif
