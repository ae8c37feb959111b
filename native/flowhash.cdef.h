/* cffi declarations for dataplane._native (no #include allowed here).
 * The real header, with the layout and algorithm notes, is flowhash.h. */

#define FH_ABI_VERSION ...
#define FH_KEY_LEN ...
#define FH_FLOW_KEY_LEN ...
#define FH_MAX_TABLE_SIZE ...
#define FH_OK ...
#define FH_EINVAL ...
#define FH_ENOMEM ...
#define FH_EFULL ...
#define FH_ENOENT ...

extern const uint8_t FH_MAGLEV_OFFSET_KEY[16];
extern const uint8_t FH_MAGLEV_SKIP_KEY[16];
extern const uint8_t FH_FLOWTABLE_KEY[16];

typedef struct fh_flow_entry { ...; } fh_flow_entry;
typedef struct fh_flowtable fh_flowtable;

uint64_t fh_siphash24(const uint8_t key[16], const uint8_t *data, size_t len);
int fh_flow_key(uint8_t out[40], int family, int proto, int sport, int dport,
                const uint8_t *src, const uint8_t *dst);
void fh_flow_hash_batch(const uint8_t key[16], const uint8_t *flow_keys,
                        size_t n, uint64_t *out);

int fh_maglev_build(const uint8_t *names, const uint32_t *name_off,
                    const uint32_t *weights, uint32_t n, uint32_t size,
                    int32_t *table);
void fh_maglev_lookup_batch(const int32_t *table, uint32_t size,
                            const uint64_t *hashes, size_t n, int32_t *out);
void fh_flow_lookup_batch(const uint8_t key[16], const int32_t *table,
                          uint32_t size, const uint8_t *flow_keys, size_t n,
                          uint64_t *hashes_out, int32_t *out);

fh_flowtable *fh_flowtable_new(size_t capacity);
void fh_flowtable_free(fh_flowtable *t);
int fh_flowtable_put(fh_flowtable *t, const uint8_t key[40], int32_t owner,
                     int64_t now_ns);
int fh_flowtable_get(const fh_flowtable *t, const uint8_t key[40],
                     int32_t *owner, int64_t *last_seen_ns);
int fh_flowtable_remove(fh_flowtable *t, const uint8_t key[40],
                        int32_t *owner, int64_t *last_seen_ns);
size_t fh_flowtable_expire(fh_flowtable *t, int64_t older_than_ns);
size_t fh_flowtable_len(const fh_flowtable *t);
size_t fh_flowtable_capacity(const fh_flowtable *t);
uint64_t fh_flowtable_refused(const fh_flowtable *t);
