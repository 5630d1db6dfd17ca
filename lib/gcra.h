/* gcra: the generic cell rate algorithm, the rate limiter behind every per-second limit of
 * wsnode: one timestamp per limited thing, no timers. */
#ifndef GCRA_H
#define GCRA_H

#include <stdbool.h>

/* Admits one event at time now at `rate` a second with bursts of up to `burst` events: true
 * (and *tat moves on) or false (nothing changes). *tat starts at 0. now is wall-clock time
 * (libev's ev_now): a step back is detected and forgiven, a step forward refills. */
static inline bool gcra_admit(double *tat, double now, double rate, double burst)
{
    if (*tat > now + burst / rate + 1.0 / rate)
        *tat = now; /* the clock stepped back (NTP, a restored VM): start afresh, never lock out */
    double next = (*tat > now ? *tat : now) + 1.0 / rate;
    if (next - now > burst / rate + 1e-9)
        return false;
    *tat = next;
    return true;
}

#endif
