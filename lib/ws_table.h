/* ws_table: an intrusive hash table of byte-string keys (the router's nodes, clients, users
 * and channels; the node's client addresses). The caller embeds a tab_entry in its struct and
 * owns both; the table holds only pointers. Keys come from the network, so the hash is keyed
 * SipHash. No I/O. */
#ifndef WS_TABLE_H
#define WS_TABLE_H

#include <stddef.h>
#include <stdint.h>

/* 24 bytes: it is embedded in every connection and channel, so it is kept small. The hash
 * kept is the low 32 bits of the key's SipHash (bucket index and a quick compare). */
typedef struct tab_entry {
    struct tab_entry *next;
    const char *key; /* points into the owning struct; set before tab_put */
    uint32_t klen;   /* key length: keys are short names and ids */
    uint32_t hash;
} tab_entry;

typedef struct table {
    tab_entry **b;
    size_t cap, n;
    uint64_t key[2];
} table;

/* An empty table hashing with SipHash key (two words from ws_siphash_key). */
void tab_init(table *t, const uint64_t key[2]);

/* Frees the bucket array (not the entries). */
void tab_free(table *t);

/* The entry with key k[0..n), or NULL. */
tab_entry *tab_get(const table *t, const char *k, size_t n);

/* Inserts e (its key must not be in t). Returns 0, or -1 when out of memory. */
int tab_put(table *t, tab_entry *e);

/* Removes e, which must be in t. */
void tab_del(table *t, tab_entry *e);

/* Calls fn(e, ctx) for every entry; fn may tab_del the entry it is given, nothing else. */
void tab_each(table *t, void (*fn)(tab_entry *e, void *ctx), void *ctx);

#endif
