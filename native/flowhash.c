/*
 * flowhash.c - SipHash-2-4, flow keys, Maglev tables and the flow table.
 *
 * See flowhash.h for the flow-key layout, the Maglev keys and weight scheme,
 * and the flow-table design.
 */
#include "flowhash.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static_assert(sizeof(fh_flow_entry) <= 64, "flow table entry must fit 64 bytes");
static_assert(FH_FLOW_KEY_LEN == 40, "flow key layout is 40 bytes");

const uint8_t FH_MAGLEV_OFFSET_KEY[16] = {
    'm', 'a', 'g', 'l', 'e', 'v', '-', 'o', 'f', 'f', 's', '-', 'k', 'e', 'y', '1'};
const uint8_t FH_MAGLEV_SKIP_KEY[16] = {
    'm', 'a', 'g', 'l', 'e', 'v', '-', 's', 'k', 'i', 'p', '-', 'k', 'e', 'y', '2'};
const uint8_t FH_FLOWTABLE_KEY[16] = {
    'd', 'p', '-', 'f', 'l', 'o', 'w', 't', 'a', 'b', 'l', 'e', '-', 'k', 'e', 'y'};

/* ---------------------------------------------------------------- SipHash */

static inline uint64_t load64_le(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

#define SIPROUND                                                             \
    do {                                                                     \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);           \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                               \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                               \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);           \
    } while (0)

#define SIP_INIT(k0, k1)                                                     \
    uint64_t v0 = UINT64_C(0x736f6d6570736575) ^ (k0);                       \
    uint64_t v1 = UINT64_C(0x646f72616e646f6d) ^ (k1);                       \
    uint64_t v2 = UINT64_C(0x6c7967656e657261) ^ (k0);                       \
    uint64_t v3 = UINT64_C(0x7465646279746573) ^ (k1)

#define SIP_COMPRESS(m)                                                      \
    do {                                                                     \
        uint64_t m_ = (m);                                                   \
        v3 ^= m_; SIPROUND; SIPROUND; v0 ^= m_;                              \
    } while (0)

#define SIP_FINAL(out)                                                       \
    do {                                                                     \
        v2 ^= 0xff; SIPROUND; SIPROUND; SIPROUND; SIPROUND;                  \
        (out) = v0 ^ v1 ^ v2 ^ v3;                                           \
    } while (0)

static uint64_t sip_generic(uint64_t k0, uint64_t k1, const uint8_t *in, size_t len)
{
    SIP_INIT(k0, k1);
    const uint8_t *end = in + (len - (len % 8));
    uint64_t b = ((uint64_t)len) << 56;
    uint64_t out;

    for (; in != end; in += 8)
        SIP_COMPRESS(load64_le(in));
    switch (len & 7) {
    case 7: b |= ((uint64_t)in[6]) << 48; /* fall through */
    case 6: b |= ((uint64_t)in[5]) << 40; /* fall through */
    case 5: b |= ((uint64_t)in[4]) << 32; /* fall through */
    case 4: b |= ((uint64_t)in[3]) << 24; /* fall through */
    case 3: b |= ((uint64_t)in[2]) << 16; /* fall through */
    case 2: b |= ((uint64_t)in[1]) << 8;  /* fall through */
    case 1: b |= ((uint64_t)in[0]);       break;
    case 0: break;
    }
    SIP_COMPRESS(b);
    SIP_FINAL(out);
    return out;
}

/* SipHash-2-4 of exactly one 40-byte flow key: five words, then the length
 * block (40 << 56, no tail bytes). */
static inline uint64_t sip_flow_key(uint64_t k0, uint64_t k1, const uint8_t *in)
{
    SIP_INIT(k0, k1);
    uint64_t out;

    SIP_COMPRESS(load64_le(in));
    SIP_COMPRESS(load64_le(in + 8));
    SIP_COMPRESS(load64_le(in + 16));
    SIP_COMPRESS(load64_le(in + 24));
    SIP_COMPRESS(load64_le(in + 32));
    SIP_COMPRESS(((uint64_t)FH_FLOW_KEY_LEN) << 56);
    SIP_FINAL(out);
    return out;
}

uint64_t fh_siphash24(const uint8_t key[16], const uint8_t *data, size_t len)
{
    return sip_generic(load64_le(key), load64_le(key + 8), data, len);
}

/* --------------------------------------------------------------- flow key */

int fh_flow_key(uint8_t out[40], int family, int proto, int sport, int dport,
                const uint8_t *src, const uint8_t *dst)
{
    size_t alen;

    if (family == 4)
        alen = 4;
    else if (family == 6)
        alen = 16;
    else
        return FH_EINVAL;
    if (proto < 0 || proto > 255 || sport < 0 || sport > 65535 || dport < 0 ||
        dport > 65535 || src == NULL || dst == NULL)
        return FH_EINVAL;
    memset(out, 0, FH_FLOW_KEY_LEN);
    out[0] = (uint8_t)family;
    out[1] = (uint8_t)proto;
    out[2] = (uint8_t)(sport >> 8);
    out[3] = (uint8_t)sport;
    out[4] = (uint8_t)(dport >> 8);
    out[5] = (uint8_t)dport;
    memcpy(out + 8, src, alen);
    memcpy(out + 24, dst, alen);
    return FH_OK;
}

void fh_flow_hash_batch(const uint8_t key[16], const uint8_t *flow_keys,
                        size_t n, uint64_t *out)
{
    uint64_t k0 = load64_le(key), k1 = load64_le(key + 8);

    for (size_t i = 0; i < n; i++)
        out[i] = sip_flow_key(k0, k1, flow_keys + i * FH_FLOW_KEY_LEN);
}

/* ----------------------------------------------------------------- Maglev */

int fh_maglev_build(const uint8_t *names, const uint32_t *name_off,
                    const uint32_t *weights, uint32_t n, uint32_t size,
                    int32_t *table)
{
    uint32_t *pos, *skip;
    uint64_t *target;
    uint64_t maxw = 1;
    uint32_t filled = 0;

    if (n == 0 || size < 2 || n > size || size > FH_MAX_TABLE_SIZE ||
        names == NULL || name_off == NULL || table == NULL)
        return FH_EINVAL;
    for (uint32_t i = 0; i < n; i++) {
        if (name_off[i + 1] < name_off[i])
            return FH_EINVAL;
        if (weights != NULL) {
            if (weights[i] == 0)
                return FH_EINVAL;
            if (weights[i] > maxw)
                maxw = weights[i];
        }
    }

    pos = malloc(sizeof(*pos) * n);
    skip = malloc(sizeof(*skip) * n);
    target = malloc(sizeof(*target) * n);
    if (pos == NULL || skip == NULL || target == NULL) {
        free(pos);
        free(skip);
        free(target);
        return FH_ENOMEM;
    }

    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *name = names + name_off[i];
        size_t len = name_off[i + 1] - name_off[i];
        uint64_t h1 = fh_siphash24(FH_MAGLEV_OFFSET_KEY, name, len);
        uint64_t h2 = fh_siphash24(FH_MAGLEV_SKIP_KEY, name, len);
        pos[i] = (uint32_t)(h1 % size);
        skip[i] = (uint32_t)(h2 % (size - 1) + 1);
        target[i] = maxw;
    }

    /* -1 (all bits set) marks an empty slot. */
    memset(table, 0xff, sizeof(*table) * (size_t)size);

    for (uint64_t round = 1;; round++) {
        for (uint32_t i = 0; i < n; i++) {
            uint64_t w = weights != NULL ? weights[i] : 1;
            uint32_t c, s;

            if (round * w < target[i])
                continue;
            target[i] += maxw;
            /* Walk backend i's permutation to its next empty slot.  size is
             * below 2^31 and c, s below size, so c + s cannot overflow. */
            c = pos[i];
            s = skip[i];
            while (table[c] >= 0) {
                c += s;
                if (c >= size)
                    c -= size;
            }
            table[c] = (int32_t)i;
            c += s;
            if (c >= size)
                c -= size;
            pos[i] = c;
            if (++filled == size)
                goto done;
        }
    }
done:
    free(pos);
    free(skip);
    free(target);
    return FH_OK;
}

void fh_maglev_lookup_batch(const int32_t *table, uint32_t size,
                            const uint64_t *hashes, size_t n, int32_t *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = table[hashes[i] % size];
}

void fh_flow_lookup_batch(const uint8_t key[16], const int32_t *table,
                          uint32_t size, const uint8_t *flow_keys, size_t n,
                          uint64_t *hashes_out, int32_t *out)
{
    uint64_t k0 = load64_le(key), k1 = load64_le(key + 8);

    for (size_t i = 0; i < n; i++) {
        uint64_t h = sip_flow_key(k0, k1, flow_keys + i * FH_FLOW_KEY_LEN);
        if (hashes_out != NULL)
            hashes_out[i] = h;
        out[i] = table[h % size];
    }
}

/* ------------------------------------------------------------- flow table */

static inline uint64_t ft_hash(const uint8_t *key)
{
    return sip_flow_key(load64_le(FH_FLOWTABLE_KEY), load64_le(FH_FLOWTABLE_KEY + 8),
                        key);
}

/* Index of key's slot if present (*found = 1), else of the empty slot that
 * ends its probe sequence (*found = 0).  There is always an empty slot since
 * count <= capacity < nslots. */
static size_t ft_find(const fh_flowtable *t, const uint8_t *key, uint64_t h,
                      int *found)
{
    size_t mask = t->nslots - 1;
    size_t i = (size_t)h & mask;

    for (;;) {
        const fh_flow_entry *e = &t->slots[i];
        if (!e->used) {
            *found = 0;
            return i;
        }
        if (e->hash == h && memcmp(e->key, key, FH_FLOW_KEY_LEN) == 0) {
            *found = 1;
            return i;
        }
        i = (i + 1) & mask;
    }
}

/* Remove the entry at slot i by backward shifting the rest of its cluster. */
static void ft_delete_at(fh_flowtable *t, size_t i)
{
    size_t mask = t->nslots - 1;
    size_t j = i;

    for (;;) {
        size_t home;
        j = (j + 1) & mask;
        if (!t->slots[j].used)
            break;
        home = (size_t)t->slots[j].hash & mask;
        /* The entry at j may move to the hole at i only if its home slot is
         * not cyclically within (i, j]. */
        if (i <= j ? (home > i && home <= j) : (home > i || home <= j))
            continue;
        t->slots[i] = t->slots[j];
        i = j;
    }
    memset(&t->slots[i], 0, sizeof(t->slots[i]));
    t->count--;
}

fh_flowtable *fh_flowtable_new(size_t capacity)
{
    fh_flowtable *t;
    size_t want, nslots = 4;

    if (capacity == 0 || capacity > ((size_t)1 << 40) / sizeof(fh_flow_entry))
        return NULL;
    want = capacity + capacity / 3 + 1;
    while (nslots < want)
        nslots <<= 1;
    t = malloc(sizeof(*t));
    if (t == NULL)
        return NULL;
    t->slots = calloc(nslots, sizeof(fh_flow_entry));
    if (t->slots == NULL) {
        free(t);
        return NULL;
    }
    t->nslots = nslots;
    t->capacity = capacity;
    t->count = 0;
    t->refused = 0;
    return t;
}

void fh_flowtable_free(fh_flowtable *t)
{
    if (t != NULL) {
        free(t->slots);
        free(t);
    }
}

int fh_flowtable_put(fh_flowtable *t, const uint8_t key[40], int32_t owner,
                     int64_t now_ns)
{
    uint64_t h = ft_hash(key);
    int found;
    size_t i = ft_find(t, key, h, &found);
    fh_flow_entry *e = &t->slots[i];

    if (!found) {
        if (t->count >= t->capacity) {
            t->refused++;
            return FH_EFULL;
        }
        memcpy(e->key, key, FH_FLOW_KEY_LEN);
        e->hash = h;
        e->used = 1;
        t->count++;
    }
    e->owner = owner;
    e->last_seen_ns = now_ns;
    return FH_OK;
}

int fh_flowtable_get(const fh_flowtable *t, const uint8_t key[40],
                     int32_t *owner, int64_t *last_seen_ns)
{
    int found;
    size_t i = ft_find(t, key, ft_hash(key), &found);

    if (!found)
        return FH_ENOENT;
    *owner = t->slots[i].owner;
    *last_seen_ns = t->slots[i].last_seen_ns;
    return FH_OK;
}

int fh_flowtable_remove(fh_flowtable *t, const uint8_t key[40],
                        int32_t *owner, int64_t *last_seen_ns)
{
    int found;
    size_t i = ft_find(t, key, ft_hash(key), &found);

    if (!found)
        return FH_ENOENT;
    if (owner != NULL)
        *owner = t->slots[i].owner;
    if (last_seen_ns != NULL)
        *last_seen_ns = t->slots[i].last_seen_ns;
    ft_delete_at(t, i);
    return FH_OK;
}

size_t fh_flowtable_expire(fh_flowtable *t, int64_t older_than_ns)
{
    size_t removed = 0;

    /* Scanning upwards is safe with backward-shift deletion: after deleting
     * slot i, the entry shifted into i comes from later in the cluster (not
     * yet visited), so slot i is checked again; entries shifted across the
     * wrap-around come from slots already visited and kept. */
    for (size_t i = 0; i < t->nslots && t->count > 0; i++) {
        while (t->slots[i].used && t->slots[i].last_seen_ns < older_than_ns) {
            ft_delete_at(t, i);
            removed++;
        }
    }
    return removed;
}

size_t fh_flowtable_len(const fh_flowtable *t) { return t->count; }
size_t fh_flowtable_capacity(const fh_flowtable *t) { return t->capacity; }
uint64_t fh_flowtable_refused(const fh_flowtable *t) { return t->refused; }
