/* resume: the reconnect scenario's subscribers. Every --reconnect-every seconds all of them
 * close (1000) and reconnect at once, each resubscribing with since = the last seq it saw on
 * its channel and the epoch it knows; the resume ack's "recovered" is counted, the time from
 * the close to that ack measured, and every subscriber's channel stream checked to hold each
 * seq once and in order (gaps, duplicates, reordered), across the resumes. */
#ifndef RESUME_H
#define RESUME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wk.h"

/* Sends c's sub: plain the first time, with since and epoch when it resumes. */
void resume_send_sub(lconn *c);

/* A frame without a measured message on a reconnect subscriber: its sub ack (the first one
 * settles it, later ones are resumes) or a reset. True when it was one of those. */
bool resume_on_frame(lconn *c, const uint8_t *m, size_t n);

/* A measured message on a reconnect subscriber: its channel seq checked against the stream. */
void resume_on_msg(lconn *c, const uint8_t *m, size_t n);

/* Timer (data: the wk): every subscriber closes and reconnects (after --reconnect-delay). */
void resume_on_timer(struct ev_loop *loop, ev_timer *t, int revents);

/* Counts the resumes still without their ack (for the final report). */
void resume_count_pending(wk *w);

#endif
