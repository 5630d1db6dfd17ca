#include "session.h"

#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "ws_frame.h"

#define HELD_MAX 4096 /* live frames held back for one recovery; beyond, it is not recovered */

enum { R_READING, R_FENCED };

typedef struct shared_read shared_read;

/* One sub with since of one session, keyed in w->recoveries by (session, channel). */
typedef struct recovery {
    tab_entry e;
    struct {
        session *s;
        const void *chan;
    } key;
    uint8_t state;
    bool overflow;  /* held more than HELD_MAX: the answer cannot be whole */
    uint64_t since; /* the client's; then, fenced: the last seq it was given */
    uint8_t epoch_len;
    char epoch[CLUSTER_EPOCH_MAX];
    shared_read *rd; /* the read that will answer it (R_READING) */
    ws_list link;    /* in rd->on or rd->next */
    session_wait *wait; /* the request id and channel to ack */
    wbuf **held;
    uint32_t n, cap;
} recovery;

/* One read of a channel's missed messages, shared by every recovery of that channel that it
 * can answer (a reconnect storm costs one read, not one per client); in w->reads by name. */
struct shared_read {
    tab_entry e;
    worker *w;
    uint64_t since; /* what it reads after: at most the since of every recovery in `on` */
    bool sent;      /* asked (else waiting for the SUBSCRIBE to be confirmed) */
    ws_list on;     /* the recoveries it answers */
    ws_list next;   /* recoveries that came while it was under way: memory or the next read */
    uint8_t ch_len;
    char ch[ENV_CHANNEL_MAX];
};

static ws_span read_name(const shared_read *rd) { return (ws_span){rd->ch, rd->ch_len}; }

static void release_held(recovery *r)
{
    for (uint32_t i = 0; i < r->n; i++)
        wbuf_unref(r->held[i]);
    free(r->held);
    r->held = NULL;
    r->n = r->cap = 0;
}

/* Takes r out of the table (the session no longer holds frames for it) and frees it. */
static void finish(recovery *r)
{
    session *s = r->key.s;
    hub_hold(&s->w->hub, &s->subs, (ws_span){r->wait->ch, r->wait->ch_len}, false);
    tab_del(&s->w->recoveries, &r->e);
    s->nrecover--;
    if (r->rd)
        ws_list_remove(&r->link);
    release_held(r);
    free(r->wait);
    free(r);
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

static bool same_epoch(ws_span a, ws_span b) { return a.n == b.n && memcmp(a.p, b.p, a.n) == 0; }

/* True if msgs (oldest first, all after since) are exactly since+1 .. pos.seq. */
static bool whole(uint64_t since, env_pos pos, const hub_kept *msgs, size_t n)
{
    if (since > pos.seq || pos.seq - since != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (msgs[i].seq != since + 1 + i)
            return false;
    return true;
}

/* Answers r from pos (NULL: Redis could not say) and msgs (the channel's messages after some
 * seq, oldest first): the ack, the replay when whole, the held frames newer than the
 * position; then r is fenced against late duplicates, or over. */
static void answer(recovery *r, const env_pos *pos, const hub_kept *msgs, size_t n)
{
    session *s = r->key.s;
    ws_span id = {r->wait->id, r->wait->id_len};
    size_t skip = 0;
    while (skip < n && msgs[skip].seq <= r->since)
        skip++;
    env_pos at = pos ? *pos : (env_pos){0, {"", 0}};
    bool ok = pos && !r->overflow &&
              (!r->epoch_len || same_epoch((ws_span){r->epoch, r->epoch_len}, at.epoch)) &&
              whole(r->since, at, msgs + skip, n - skip);
    char out[ENV_ID_MAX + CLUSTER_EPOCH_MAX + 96];
    size_t len = env_write_sub_ack(out, sizeof out, id, at, ok);
    session_send_text(s, out, len);
    for (size_t i = skip; ok && i < n; i++)
        s->tx->send(s, msgs[i].frame);
    bool reset = false; /* the epoch changed during the read: what follows is all new */
    for (uint32_t i = 0; i < r->n; i++) {
        reset = reset || !r->held[i]->seq;
        if (!pos || reset || r->held[i]->seq > at.seq)
            s->tx->send(s, r->held[i]);
    }
    release_held(r);
    if (r->rd) {
        ws_list_remove(&r->link);
        r->rd = NULL;
    }
    if (!pos || reset) {
        finish(r);
        return;
    }
    r->state = R_FENCED;
    r->since = at.seq;
}

/* What this worker's memory holds after since, when that is everything after it up to the
 * channel's position, in the epoch named (none: the current one): true, with *pos the
 * position and *msgs (malloc'd, NULL when there are none) its *n messages. */
static bool memory_after(const worker *w, ws_span ch, uint64_t since, ws_span epoch,
                         env_pos *pos, hub_kept **msgs, size_t *n)
{
    if (!hub_position(&w->hub, ch, pos) || (epoch.n && !same_epoch(epoch, pos->epoch)))
        return false;
    uint64_t first = hub_kept_first(&w->hub, ch);
    if (since != pos->seq && !(first && since < pos->seq && first <= since + 1))
        return false;
    size_t want = (size_t)(pos->seq - since);
    *msgs = want ? malloc(want * sizeof **msgs) : NULL;
    if (want && !*msgs)
        return false;
    *n = hub_kept_after(&w->hub, ch, since, *msgs, want);
    return true;
}

/* Answers r from this worker's memory if it can; true when it did. */
static bool answer_from_memory(recovery *r)
{
    worker *w = r->key.s->w;
    env_pos pos;
    hub_kept *msgs;
    size_t n;
    if (!memory_after(w, (ws_span){r->wait->ch, r->wait->ch_len}, r->since,
                      (ws_span){r->epoch, r->epoch_len}, &pos, &msgs, &n))
        return false;
    char epoch[CLUSTER_EPOCH_MAX]; /* pos.epoch points into the hub, which replaying may change */
    memcpy(epoch, pos.epoch.p, pos.epoch.n);
    pos.epoch.p = epoch;
    w->st->recovered_memory++;
    answer(r, &pos, msgs, n);
    free(msgs);
    return true;
}

static void send_read(shared_read *rd);

static void read_confirmed(void *arg, uint64_t ok) { send_read(arg); }

/* Frames msgs once for everyone the read answers; NULL when out of memory. */
static hub_kept *frame_all(worker *w, ws_span ch, const bus_stored *msgs, size_t n)
{
    hub_kept *k = malloc((n ? n : 1) * sizeof *k);
    for (size_t i = 0; k && i < n; i++) {
        k[i] = (hub_kept){hub_frame(&w->hub, ch, msgs[i].seq, msgs[i].data), msgs[i].seq,
                          msgs[i].data};
        if (!k[i].frame) {
            while (i--)
                wbuf_unref(k[i].frame);
            free(k);
            return NULL;
        }
        k[i].data.p = (const char *)k[i].frame->data + k[i].frame->len - 1 - msgs[i].data.n;
    }
    return k;
}

/* The read answered: every recovery it was for gets its answer; those that came while it
 * was under way are answered from memory if it now holds what they missed, else read next. */
static void read_answered(void *arg, const bus_position *pos, const bus_stored *msgs, size_t n)
{
    shared_read *rd = arg;
    worker *w = rd->w;
    ws_span ch = read_name(rd);
    hub_kept *k = frame_all(w, ch, msgs, n);
    env_pos at = pos ? (env_pos){pos->seq, {pos->epoch, pos->epoch_len}} : (env_pos){0};
    if (pos && hub_learn(&w->hub, ch, at.seq, at.epoch) && k)
        hub_seed(&w->hub, ch, k, n); /* a storm's later clients need no read */
    while (!ws_list_empty(&rd->on)) {
        recovery *r = ws_container_of(ws_list_first(&rd->on), recovery, link);
        answer(r, pos && k ? &at : NULL, k, k ? n : 0);
    }
    for (size_t i = 0; k && i < n; i++)
        wbuf_unref(k[i].frame);
    free(k);
    rd->since = UINT64_MAX;
    while (!ws_list_empty(&rd->next)) {
        recovery *r = ws_container_of(ws_list_first(&rd->next), recovery, link);
        ws_list_remove(&r->link);
        ws_list_push(&rd->on, &r->link);
        if (answer_from_memory(r))
            continue;
        if (r->since < rd->since)
            rd->since = r->since;
    }
    rd->sent = false;
    if (ws_list_empty(&rd->on)) {
        tab_del(&w->reads, &rd->e);
        free(rd);
        return;
    }
    if (!bus_when_subscribed(w->bus, ch, read_confirmed, rd))
        send_read(rd); /* last: it may answer (and free rd) at once */
}

static void send_read(shared_read *rd)
{
    /* MAXLEN ~ keeps a little more than the size: ask for what may be there, check it all. */
    uint32_t count = (uint32_t)rd->w->cfg->history_size + 128;
    /* Back a memory's worth further: the read then fills the memory that answers the storm's
     * later clients, whose since is a little older or newer than this one's. */
    uint32_t keep = rd->w->hub.keep;
    rd->since -= rd->since < keep ? rd->since : keep;
    rd->sent = true;
    rd->w->st->recovery_reads++;
    if (bus_read(rd->w->bus, read_name(rd), true, rd->since, count, read_answered, rd) != 0)
        read_answered(rd, NULL, NULL, 0); /* Redis is unavailable: not recovered */
}

/* Puts r on the channel's shared read: the one about to be sent, else the next one. A read
 * already sent cannot answer r: Redis may have run it before r subscribed, and what reached
 * the channel in between would be in neither the read nor what r holds. */
static bool join_read(recovery *r)
{
    worker *w = r->key.s->w;
    ws_span ch = {r->wait->ch, r->wait->ch_len};
    tab_entry *e = tab_get(&w->reads, ch.p, ch.n);
    shared_read *rd = e ? ws_container_of(e, shared_read, e) : NULL;
    if (rd) {
        r->rd = rd;
        if (!rd->sent && r->since < rd->since)
            rd->since = r->since;
        ws_list_push(rd->sent ? &rd->next : &rd->on, &r->link);
        return true;
    }
    if (!(rd = calloc(1, sizeof *rd)))
        return false;
    rd->w = w;
    rd->since = r->since;
    ws_list_init(&rd->on);
    ws_list_init(&rd->next);
    memcpy(rd->ch, ch.p, ch.n);
    rd->ch_len = (uint8_t)ch.n;
    rd->e.key = rd->ch;
    rd->e.klen = rd->ch_len;
    if (tab_put(&w->reads, &rd->e) < 0) {
        free(rd);
        return false;
    }
    r->rd = rd;
    ws_list_push(&rd->on, &r->link);
    if (!bus_when_subscribed(w->bus, ch, read_confirmed, rd))
        send_read(rd); /* already confirmed (or Redis is down: the read says so) */
    return true;
}

/* Acks q with what this worker knows of the channel, not recovered: a second since on a
 * channel whose recovery is still under way, or one the memory cannot answer without a bus. */
static void refuse(session *s, const env_req *q)
{
    env_pos pos = {0, {"", 0}};
    hub_position(&s->w->hub, q->ch, &pos);
    char out[ENV_ID_MAX + CLUSTER_EPOCH_MAX + 96];
    size_t len = env_write_sub_ack(out, sizeof out, q->id, pos, false);
    session_send_text(s, out, len);
}

/* Answers q at once from memory if it holds what the client missed: the ack, then the kept
 * frames themselves. */
static bool recover_from_memory(session *s, const env_req *q)
{
    env_pos pos;
    hub_kept *msgs;
    size_t n;
    if (!memory_after(s->w, q->ch, q->since, q->epoch, &pos, &msgs, &n))
        return false;
    char out[ENV_ID_MAX + CLUSTER_EPOCH_MAX + 96];
    size_t len = env_write_sub_ack(out, sizeof out, q->id, pos, true);
    session_send_text(s, out, len);
    for (size_t i = 0; i < n; i++)
        s->tx->send(s, msgs[i].frame);
    free(msgs);
    s->w->st->recovered_memory++;
    return true;
}

bool session_recover(session *s, const env_req *q)
{
    const void *chan = hub_channel_id(&s->w->hub, q->ch);
    recovery *r = chan ? find(s, chan) : NULL;
    if (r && r->state == R_FENCED) {
        finish(r); /* the last recovery of this channel is over: a new one replaces it */
    } else if (r) {
        refuse(s, q);
        return true;
    }
    if (recover_from_memory(s, q))
        return true;
    if (!s->w->bus) { /* the memory is the whole history */
        refuse(s, q);
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
    if (!join_read(r))
        answer(r, NULL, NULL, 0); /* out of memory: not recovered */
    return true;
}

static void stop_one(tab_entry *e, void *ctx)
{
    recovery *r = ws_container_of(e, recovery, e);
    if (r->key.s == ctx)
        finish(r); /* takes it off its read too: the read answers the others */
}

void session_recovery_stop(session *s)
{
    if (s->nrecover)
        tab_each(&s->w->recoveries, stop_one, s);
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

bool session_history_memory(worker *w, ws_span ch, uint32_t limit, bool op, ws_span id,
                            char **text, size_t *len)
{
    env_pos pos = {0, {"", 0}};
    bool known = hub_position(&w->hub, ch, &pos);
    uint64_t first = hub_kept_first(&w->hub, ch);
    uint64_t have = first ? pos.seq - first + 1 : 0;
    if (w->bus && (!known || (have < limit && have < pos.seq)))
        return false; /* Redis may hold more than this worker's memory */
    hub_kept *k = malloc((limit ? limit : 1) * sizeof *k);
    bus_stored *m = malloc((limit ? limit : 1) * sizeof *m);
    size_t n = k && m ? hub_kept_after(&w->hub, ch, 0, k, limit) : 0;
    for (size_t i = 0; i < n; i++)
        m[i] = (bus_stored){k[i].seq, k[i].data, NULL};
    bus_position bp = {pos.seq, {0}, (uint8_t)pos.epoch.n};
    memcpy(bp.epoch, pos.epoch.p, pos.epoch.n);
    *text = k && m ? session_history_text(op, id, ch, &bp, m, n, len) : NULL;
    free(k);
    free(m);
    return true;
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
    char *text;
    size_t len;
    if (session_history_memory(s->w, r->ch, limit, true, r->id, &text, &len)) {
        if (text)
            session_send_text(s, text, len);
        else
            session_reply_err(s, r->id, "internal", "out of memory");
        free(text);
        return;
    }
    session_wait *w = session_wait_new(s, r);
    if (w && bus_read(s->w->bus, r->ch, false, 0, limit, history_read, w) == 0) {
        s->refs++;
        return;
    }
    free(w);
    session_reply_err(s, r->id, "unavailable", "the Redis bus is down; try again");
}
