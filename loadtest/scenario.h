/* scenario: what wsload's connections say and how their answers are measured: subscribing,
 * publishing and echoing measured messages (paced or at max rate), churn and storms, and for
 * each message received its latency and its place in its publisher's sequence (lost,
 * duplicated, reordered). The connections themselves are lconn's. */
#ifndef SCENARIO_H
#define SCENARIO_H

#include <stddef.h>
#include <stdint.h>

#include "wk.h"

/* Prepares w for its scenario (template prefixes) and sets w's on_ready and on_message hooks
 * to the two below. Strings it makes live as long as the process. */
void scenario_init(wk *w);

/* c is open (upgraded, or connected for HTTP publishing): subscribe, or count it ready. */
void scenario_on_ready(lconn *c);

/* One whole message m[0..n) received on c: a measured one is timed and tracked, an ack
 * settles a subscriber, an err is counted. */
void scenario_on_message(lconn *c, const uint8_t *m, size_t n);

/* Timer (data: the wk): sends what is due at --rate, or churns connections. */
void scenario_on_pace(struct ev_loop *loop, ev_timer *t, int revents);

/* Max rate: tops every sender's queue up to half of OUT_HIGH. */
void scenario_top_up(wk *w);

/* Timer (data: the wk): --storm, every open connection closed and reopened at once. */
void scenario_on_storm(struct ev_loop *loop, ev_timer *t, int revents);

#endif
