/* ws_hash: the two hashes wsfan uses. Pure: no I/O, no allocation.
 * - ws_siphash: SipHash-1-3 under a secret key, for hash tables whose keys come from clients
 *   (channel names, client and user ids), so nobody can aim keys at one bucket.
 * - ws_shard: which wsrouter shard owns a name. Every node and router must agree on it, so it
 *   is unkeyed and fixed forever: FNV-1a 64 of the bytes, modulo the shard count. */
#ifndef WS_HASH_H
#define WS_HASH_H

#include <stddef.h>
#include <stdint.h>

/* Reads a SipHash key from 16 bytes (random ones: RAND_bytes). */
void ws_siphash_key(uint64_t key[2], const uint8_t bytes[16]);

/* SipHash-1-3 of p[0..n) under key. */
uint64_t ws_siphash(const uint64_t key[2], const void *p, size_t n);

/* The shard (0..shards-1) that owns name p[0..n); shards >= 1. */
uint32_t ws_shard(const void *p, size_t n, uint32_t shards);

#endif
