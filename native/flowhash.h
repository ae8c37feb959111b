/*
 * flowhash.h - keyed flow hashing, Maglev tables and a flow table for dataplane.
 *
 * Everything here is plain C99/C11 with no global state; all functions are
 * re-entrant.  The Python facade is dataplane/flowhash.py; no other module
 * calls this library.
 *
 * SipHash-2-4
 *   fh_siphash24(key[16], data, len) is the reference SipHash-2-4 with a
 *   128-bit key, returning the 64-bit result (the value whose little-endian
 *   bytes are the reference implementation's 8-byte output).
 *
 * Flow key layout (FH_FLOW_KEY_LEN = 40 bytes)
 *
 *   offset  size  field
 *   0       1     family: 4 (IPv4) or 6 (IPv6)
 *   1       1     IP protocol number (6 TCP, 17 UDP, ...)
 *   2       2     source port, big-endian (network order)
 *   4       2     destination port, big-endian
 *   6       2     padding, always zero
 *   8       16    source address; IPv4 uses bytes 8..11, bytes 12..23 zero
 *   24      16    destination address; IPv4 uses bytes 24..27, 28..39 zero
 *
 *   Addresses are in network order.  The keyed flow hash of a flow is
 *   fh_siphash24(key, flow_key, 40).  The layout is direction-sensitive: the
 *   reply direction (src and dst swapped) is a different key.
 *
 * Maglev (Eisenbud et al., NSDI'16, section 3.4, Pseudocode 1)
 *   For backend i with name n_i (UTF-8 bytes):
 *     offset_i = siphash24(FH_MAGLEV_OFFSET_KEY, n_i) % M
 *     skip_i   = siphash24(FH_MAGLEV_SKIP_KEY,   n_i) % (M - 1) + 1
 *     perm_i[j] = (offset_i + j * skip_i) % M
 *   M must be prime so that every perm_i is a permutation of 0..M-1.
 *   FH_MAGLEV_OFFSET_KEY is the 16 ASCII bytes "maglev-offs-key1" and
 *   FH_MAGLEV_SKIP_KEY the 16 ASCII bytes "maglev-skip-key2".
 *
 *   Weighted turns (the integer form of Envoy's scheme): let W be the largest
 *   weight.  Rounds are numbered r = 1, 2, ...  In each round the backends
 *   are visited in the caller's order (the facade sorts them by name), and
 *   backend i takes a turn when r * w_i >= t_i, after which t_i += W
 *   (t_i starts at W).  A turn claims the backend's next preferred empty
 *   slot.  So a backend of weight W claims once per round, and one of weight
 *   w claims floor(r * w / W) times in the first r rounds: claims are
 *   proportional to weights up to one slot.  With equal weights this is the
 *   paper's algorithm exactly, and each backend gets floor(M/N) or ceil(M/N)
 *   slots.  Filling stops when all M slots are claimed.
 *
 *   Lookup: slot = hash % M; table[slot] is the backend index.
 *
 * Flow table
 *   Fixed capacity chosen at creation (the most entries it will hold), open
 *   addressing with linear probing over a power-of-two number of 64-byte
 *   slots, at least capacity * 4 / 3 (so the load factor stays <= 0.75).
 *   Deletion uses backward shifting, so there are no tombstones.  An insert
 *   of a new key into a table already holding `capacity` entries is refused
 *   and counted in `refused`; the table never grows and never evicts.
 *   Inserting an existing key updates its owner and time.  Slot choice uses
 *   siphash24(FH_FLOWTABLE_KEY, flow_key) with the fixed key
 *   "dp-flowtable-key" (16 ASCII bytes).  Not thread-safe.
 */
#ifndef DATAPLANE_FLOWHASH_H
#define DATAPLANE_FLOWHASH_H

#include <stddef.h>
#include <stdint.h>

#define FH_ABI_VERSION 1
#define FH_KEY_LEN 16
#define FH_FLOW_KEY_LEN 40
#define FH_MAX_TABLE_SIZE 0x7fffffff

/* Error codes returned by functions that return int. */
#define FH_OK 0
#define FH_EINVAL -1   /* bad argument (size not prime is checked by caller) */
#define FH_ENOMEM -2   /* allocation failed */
#define FH_EFULL -3    /* flow table full: insert refused */
#define FH_ENOENT -4   /* key not found */

extern const uint8_t FH_MAGLEV_OFFSET_KEY[16];
extern const uint8_t FH_MAGLEV_SKIP_KEY[16];
extern const uint8_t FH_FLOWTABLE_KEY[16];

uint64_t fh_siphash24(const uint8_t key[16], const uint8_t *data, size_t len);

/* Write the 40-byte flow key described above.  family is 4 or 6; src and
 * dst point at 4 (family 4) or 16 (family 6) bytes in network order.
 * Returns FH_OK or FH_EINVAL. */
int fh_flow_key(uint8_t out[40], int family, int proto, int sport, int dport,
                const uint8_t *src, const uint8_t *dst);

/* out[i] = siphash24(key, flow_keys + 40 * i, 40) for i < n. */
void fh_flow_hash_batch(const uint8_t key[16], const uint8_t *flow_keys,
                        size_t n, uint64_t *out);

/* Fill table[0..size) with backend indices 0..n-1.  names is the
 * concatenation of the n names; name i is names[name_off[i] .. name_off[i+1]).
 * weights[i] >= 1, or weights == NULL for all ones.  size must be prime and
 * >= n; the caller checks primality.  Returns FH_OK, FH_EINVAL or FH_ENOMEM. */
int fh_maglev_build(const uint8_t *names, const uint32_t *name_off,
                    const uint32_t *weights, uint32_t n, uint32_t size,
                    int32_t *table);

/* out[i] = table[hashes[i] % size]. */
void fh_maglev_lookup_batch(const int32_t *table, uint32_t size,
                            const uint64_t *hashes, size_t n, int32_t *out);

/* Hash n flow keys and look each up: hashes_out (may be NULL) receives the
 * flow hashes and out the backend indices. */
void fh_flow_lookup_batch(const uint8_t key[16], const int32_t *table,
                          uint32_t size, const uint8_t *flow_keys, size_t n,
                          uint64_t *hashes_out, int32_t *out);

/* ---- flow table ---- */

typedef struct fh_flow_entry {
    uint8_t key[FH_FLOW_KEY_LEN]; /* flow key, layout above */
    uint64_t hash;                /* siphash24(FH_FLOWTABLE_KEY, key) */
    int64_t last_seen_ns;
    int32_t owner;
    uint32_t used;                /* 0 = empty slot, 1 = occupied */
} fh_flow_entry;

typedef struct fh_flowtable {
    fh_flow_entry *slots;
    size_t nslots;    /* power of two */
    size_t capacity;  /* most entries held */
    size_t count;
    uint64_t refused; /* inserts refused because the table was full */
} fh_flowtable;

/* Returns NULL if capacity is 0 or too large, or on allocation failure. */
fh_flowtable *fh_flowtable_new(size_t capacity);
void fh_flowtable_free(fh_flowtable *t);
/* FH_OK (inserted or updated) or FH_EFULL (refused, t->refused += 1). */
int fh_flowtable_put(fh_flowtable *t, const uint8_t key[40], int32_t owner,
                     int64_t now_ns);
/* FH_OK and *owner, *last_seen_ns set, or FH_ENOENT. */
int fh_flowtable_get(const fh_flowtable *t, const uint8_t key[40],
                     int32_t *owner, int64_t *last_seen_ns);
/* FH_OK (removed; *owner and *last_seen_ns set when non-NULL) or FH_ENOENT. */
int fh_flowtable_remove(fh_flowtable *t, const uint8_t key[40],
                        int32_t *owner, int64_t *last_seen_ns);
/* Remove every entry with last_seen_ns < older_than_ns; returns how many. */
size_t fh_flowtable_expire(fh_flowtable *t, int64_t older_than_ns);
size_t fh_flowtable_len(const fh_flowtable *t);
size_t fh_flowtable_capacity(const fh_flowtable *t);
uint64_t fh_flowtable_refused(const fh_flowtable *t);

#endif /* DATAPLANE_FLOWHASH_H */
