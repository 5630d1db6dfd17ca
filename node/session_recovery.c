#include "session.h"

#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "ws_frame.h"

#define HELD_MAX 4096 /* live frames held back for one recovery; beyond, it is not recovered */

enum { R_WAITING, R_READING, R_FENCED };

/* One sub with since of one session, keyed in w->recoveries by (session, channel). */
typedef struct recovery {
    tab_entry e;
    struct {
        session *s;
        const void *chan;
    } key;
    uint8_t state;
    bool overflow;  /* held more than HELD_MAX: the answer cannot be whole */
    bool orphaned;  /* the session ended while a read was in flight */
    uint64_t since; /* the client's; then, fenced: the last seq it was given */
    uint8_t epoch_len;
    char epoch[CLUSTER_EPOCH_MAX];
    session_wait *wait; /* the request id and channel to ack */
    wbuf **held;
    uint32_t n, cap;
} recovery;

static void release_held(recovery *r)
{
    for (uint32_t i = 0; i < r->n; i++)
        wbuf_unref(r->held[i]);
    free(r->held);
    r->held = NULL;
    r->n = r->cap = 0;
}

static void recovery_free(recovery *r)
{
    release_held(r);
    free(r->wait);
    free(r);
}

/* Takes r out of the table (the session no longer holds frames for it) and frees it. */
static void finish(recovery *r)
{
    session *s = r->key.s;
    hub_hold(&s->w->hub, &s->subs, (ws_span){r->wait->ch, r->wait->ch_len}, false);
    tab_del(&s->w->recoveries, &r->e);
    s->nrecover--;
    recovery_free(r);
}

static recovery *find(session *s, const void *chan)
{
    struct { session *s; const void *chan; } key = {s, chan};
    tab_entry *e = tab_get(&s->w->recoveries, (const char *)&key, sizeof key);
    return e ? ws_container_of(e, recovery, e) : NULL;
}

bool session_held_frame(hub_member *m, wbuf *frame, void *ctx)
{
    return session_recovery_hold(session_of_sub(m), frame);
}

bool session_recovery_hold(session *s, wbuf *frame)
{
    recovery *r = frame->chan ? find(s, frame->chan) : NULL;
    if (!r)
        return false;
    if (r->state == R_FENCED) { /* what was replayed may still come live: drop it once */
        if (frame->seq && frame->seq <= r->since)
            return true;
        finish(r); /* newer, or a reset (seq 0): from here on everything is new */
        return false;
    }
    if (r->n == HELD_MAX || r->overflow) {
        r->overflow = true; /* the client will hear "recovered":false and resync */
        return true;
    }
    if (r->n == r->cap) {
        uint32_t cap = r->cap ? r->cap * 2 : 16;
        wbuf **h = realloc(r->held, cap * sizeof *h);
        if (!h) {
            r->overflow = true;
            return true;
        }
        r->held = h;
        r->cap = cap;
    }
    r->held[r->n++] = wbuf_ref(frame);
    return true;
}

/* Sends msgs (seq since+1.. in order) as msg frames. */
static void replay(session *s, ws_span ch, const bus_stored *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = env_msg_len(ch.n, msgs[i].seq, msgs[i].data.n);
        uint8_t *payload;
        wbuf *b = wbuf_frame(WS_OP_TEXT, len, &payload);
        if (b)
            env_write_msg((char *)payload, ch, msgs[i].seq, msgs[i].data);
        s->tx->send(s, b);
        if (b)
            wbuf_unref(b);
    }
}

/* True if msgs are exactly since+1 .. pos->seq of the epoch the client named. */
static bool complete(const recovery *r, const bus_position *pos, const bus_stored *msgs, size_t n)
{
    if (r->overflow || (r->epoch_len && (r->epoch_len != pos->epoch_len ||
                                         memcmp(r->epoch, pos->epoch, pos->epoch_len) != 0)))
        return false;
    if (r->since > pos->seq || pos->seq - r->since != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (msgs[i].seq != r->since + 1 + i)
            return false;
    return true;
}

/* The read answered: ack, replay, release what was held (newer than the position), fence. */
static void answered(void *arg, const bus_position *pos, const bus_stored *msgs, size_t n)
{
    recovery *r = arg;
    session *s = r->key.s;
    s->refs--;
    if (r->orphaned) {
        recovery_free(r);
        return;
    }
    session_wait *w = r->wait;
    ws_span ch = {w->ch, w->ch_len}, id = {w->id, w->id_len};
    bool ok = pos && complete(r, pos, msgs, n);
    env_pos at = pos ? (env_pos){pos->seq, {pos->epoch, pos->epoch_len}} : (env_pos){0, {"", 0}};
    if (pos)
        hub_learn(&s->w->hub, ch, pos->seq, at.epoch);
    char out[ENV_ID_MAX + CLUSTER_EPOCH_MAX + 96];
    size_t len = env_write_sub_ack(out, sizeof out, id, at, ok);
    session_send_text(s, out, len);
    if (ok)
        replay(s, ch, msgs, n);
    bool reset = false; /* the epoch changed during the read: what follows is all new */
    for (uint32_t i = 0; i < r->n; i++) {
        reset = reset || !r->held[i]->seq;
        if (!pos || reset || r->held[i]->seq > at.seq)
            s->tx->send(s, r->held[i]);
    }
    release_held(r);
    if (!pos || reset) {
        finish(r);
        return;
    }
    r->state = R_FENCED;
    r->since = at.seq;
}

static void read_missed(recovery *r)
{
    session *s = r->key.s;
    ws_span ch = {r->wait->ch, r->wait->ch_len};
    /* MAXLEN ~ keeps a little more than the size: ask for what may be there, check it all. */
    uint32_t count = (uint32_t)s->w->cfg->history_size + 128;
    r->state = R_READING;
    if (bus_read(s->w->bus, ch, true, r->since, count, answered, r) == 0) {
        s->refs++;
        return;
    }
    s->refs++; /* as a read in flight would: answered lets go of it */
    answered(r, NULL, NULL, 0); /* Redis is unavailable: not recovered */
}

static void confirmed(void *arg, uint64_t ok)
{
    recovery *r = arg;
    r->key.s->refs--;
    if (r->orphaned) {
        recovery_free(r);
        return;
    }
    read_missed(r);
}

/* Answers q at once from what this worker knows of the channel: recovered only if the client
 * missed nothing. Without a bus the node is the whole history and keeps no messages yet; with
 * one, this answers a second since on a channel whose recovery is still in flight. */
static void answer_now(session *s, const env_req *q)
{
    env_pos pos = {0, {"", 0}};
    bool have = hub_position(&s->w->hub, q->ch, &pos);
    bool ok = have && q->since == pos.seq &&
              (!q->epoch.n || (q->epoch.n == pos.epoch.n && memcmp(q->epoch.p, pos.epoch.p, pos.epoch.n) == 0));
    char out[ENV_ID_MAX + CLUSTER_EPOCH_MAX + 96];
    size_t len = env_write_sub_ack(out, sizeof out, q->id, pos, ok && s->w->bus == NULL);
    session_send_text(s, out, len);
}

bool session_recover(session *s, const env_req *q)
{
    const void *chan = hub_channel_id(&s->w->hub, q->ch);
    recovery *r = chan ? find(s, chan) : NULL;
    if (r && r->state == R_FENCED) {
        finish(r); /* the last recovery of this channel is over: a new one replaces it */
    } else if (r || !s->w->bus) {
        answer_now(s, q);
        return true;
    }
    r = chan && q->epoch.n <= CLUSTER_EPOCH_MAX ? calloc(1, sizeof *r) : NULL;
    if (!r || !(r->wait = session_wait_new(s, q)) || (r->key.s = s, r->key.chan = chan,
                                                     r->e.key = (const char *)&r->key,
                                                     r->e.klen = sizeof r->key,
                                                     tab_put(&s->w->recoveries, &r->e) < 0)) {
        if (r)
            free(r->wait);
        free(r);
        return false;
    }
    s->nrecover++;
    hub_hold(&s->w->hub, &s->subs, q->ch, true);
    r->since = q->since;
    r->epoch_len = (uint8_t)q->epoch.n;
    if (q->epoch.n)
        memcpy(r->epoch, q->epoch.p, q->epoch.n);
    if (bus_when_subscribed(s->w->bus, q->ch, confirmed, r)) {
        s->refs++;
        return true;
    }
    read_missed(r); /* already confirmed (or Redis is down: the read says so) */
    return true;
}

typedef struct stop_walk {
    session *s;
    table *t;
} stop_walk;

static void stop_one(tab_entry *e, void *ctx)
{
    stop_walk *sw = ctx;
    recovery *r = ws_container_of(e, recovery, e);
    if (r->key.s != sw->s)
        return;
    tab_del(sw->t, e);
    sw->s->nrecover--;
    if (r->state == R_FENCED)
        recovery_free(r);
    else
        r->orphaned = true; /* a confirmation or read in flight frees it */
}

void session_recovery_stop(session *s)
{
    if (!s->nrecover)
        return;
    stop_walk sw = {s, &s->w->recoveries};
    tab_each(&s->w->recoveries, stop_one, &sw);
}

/* ---- history ---- */

#define HISTORY_DEFAULT 50  /* messages a history request without limit gets */
#define HISTORY_MAX 1000    /* the most one request gets (and never more than --history-size) */

uint32_t session_history_limit(const worker *w, const env_req *r)
{
    uint32_t want = r->has_limit ? r->limit : HISTORY_DEFAULT;
    uint32_t cap = (uint32_t)w->cfg->history_size < HISTORY_MAX ? (uint32_t)w->cfg->history_size
                                                                 : HISTORY_MAX;
    return want < cap ? want : cap;
}

char *session_history_text(bool op, ws_span id, ws_span ch, const bus_position *pos,
                           const bus_stored *msgs, size_t n, size_t *len)
{
    size_t cap = ENV_ID_MAX + ENV_CHANNEL_MAX + CLUSTER_EPOCH_MAX + 128, at;
    for (size_t i = 0; i < n; i++)
        cap += msgs[i].data.n + 48;
    char *out = malloc(cap);
    env_pos p = {pos->seq, {pos->epoch, pos->epoch_len}};
    if (!out || !(at = env_write_history_head(out, cap, op, id, ch, p))) {
        free(out);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        at += env_write_history_item(out + at, cap - at, i == 0, msgs[i].seq, msgs[i].data);
    out[at++] = ']';
    out[at++] = '}';
    *len = at;
    return out;
}

static void history_read(void *arg, const bus_position *pos, const bus_stored *msgs, size_t n)
{
    session_wait *w = arg;
    session *s = w->s;
    ws_span id = {w->id, w->id_len};
    size_t len;
    char *text;
    s->refs--;
    if (s->live && !pos) {
        session_reply_err(s, id, "unavailable", "the Redis bus could not answer; try again");
    } else if (s->live) {
        text = session_history_text(true, id, (ws_span){w->ch, w->ch_len}, pos, msgs, n, &len);
        if (text)
            session_send_text(s, text, len);
        else
            session_reply_err(s, id, "internal", "out of memory");
        free(text);
    }
    free(w);
}

void session_op_history(session *s, const env_req *r)
{
    uint32_t limit = session_history_limit(s->w, r);
    session_wait *w = s->w->bus ? session_wait_new(s, r) : NULL;
    if (w && bus_read(s->w->bus, r->ch, false, 0, limit, history_read, w) == 0) {
        s->refs++;
        return;
    }
    free(w);
    if (s->w->bus) {
        session_reply_err(s, r->id, "unavailable", "the Redis bus is down; try again");
        return;
    }
    /* Without Redis the node keeps no messages yet: the position alone. */
    env_pos pos = {0, {"", 0}};
    hub_position(&s->w->hub, r->ch, &pos);
    bus_position bp = {pos.seq, {0}, (uint8_t)pos.epoch.n};
    memcpy(bp.epoch, pos.epoch.p, pos.epoch.n);
    size_t len;
    char *text = session_history_text(true, r->id, r->ch, &bp, NULL, 0, &len);
    if (text)
        session_send_text(s, text, len);
    else
        session_reply_err(s, r->id, "internal", "out of memory");
    free(text);
}
