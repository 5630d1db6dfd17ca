/* iplimit: per client address (an IPv6 /64, since one host holds a whole /64), the
 * connections it holds on this worker and the rate it opens new ones (GCRA, bursts of ten
 * seconds' worth). No I/O. Entries live while the address has
 * connections or its rate state matters, so the table holds only addresses seen recently. */
#ifndef IPLIMIT_H
#define IPLIMIT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct ip_table ip_table;
typedef struct ip_entry ip_entry;

/* max_conns and rate: 0 for no limit. key: 16 random bytes for the hash. */
ip_table *ipl_new(int max_conns, int rate, const uint8_t key[16]);
void ipl_free(ip_table *t);

/* Admits one more connection from addr at time now: returns its entry (release it when the
 * connection ends), or NULL with *why set when addr is over a limit (or out of memory). */
ip_entry *ipl_admit(ip_table *t, const struct sockaddr_storage *addr, double now, const char **why);

/* The connection admitted with e has ended. */
void ipl_release(ip_table *t, ip_entry *e, double now);

/* Forgets addresses without connections whose rate state has run out. */
void ipl_sweep(ip_table *t, double now);

/* True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. */
bool ipl_loopback(const struct sockaddr_storage *addr);

#endif
