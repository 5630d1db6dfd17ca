/* heal: a worker mends its own subscribers after its Redis subscriber link came back (a
 * network flap, Redis cutting the link at its output-buffer limit, a Redis restart). For
 * every channel it follows and whose position it knew, once the new SUBSCRIBE is confirmed
 * it reads from Redis what was published after that position and delivers it, in order,
 * before the live messages, which are held back meanwhile and merged by seq. A channel
 * whose history was lost (a new epoch) is replayed from the new epoch's start, after the
 * reset the hub sends. What is older than the history kept cannot be mended: the seq jumps. */
#ifndef HEAL_H
#define HEAL_H

#include <stdbool.h>
#include <stdint.h>

#include "worker.h"

/* The subscriber link is back and ch is being subscribed again: mend it if its position is
 * known (else there is nothing to mend from). */
void heal_channel(worker *w, ws_span ch);

/* A channel message from Redis: true when it is held back (ch is being mended), false when
 * it is to be delivered now. */
bool heal_hold(worker *w, ws_span ch, uint64_t seq, ws_span epoch, ws_span data);

#endif
