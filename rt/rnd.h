/* rnd: randomness from the OS (OpenSSL's DRBG, seeded by the kernel), for what must differ
 * between processes forked from one master (retry jitter) or must not be guessed (client ids).
 * Never seeded by hand, so no two workers share a sequence. */
#ifndef RND_H
#define RND_H

#include <openssl/rand.h>
#include <stdint.h>
#include <time.h>

/* 64 random bits; the clock's nanoseconds if the DRBG failed (unique enough, not secret). */
static inline uint64_t rnd_u64(void)
{
    uint64_t r;
    if (RAND_bytes((unsigned char *)&r, sizeof r) != 1) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        r = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    }
    return r;
}

/* A uniform number in [0, 1). */
static inline double rnd_unit(void) { return (double)(rnd_u64() >> 11) / 9007199254740992.0; }

#endif
