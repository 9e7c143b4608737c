/* Memory accountant: live bytes of held activation storages, keyed by storage id.
 * Pure C11; never includes Python.h.
 *
 * A storage may be held several times (a saved tensor and a held boundary sharing
 * memory, or two views of one storage): it counts once while any hold is live.
 * Events: hold (a pack or a boundary kept), release (a free), unpack, recompute. */
#ifndef TB_ACCOUNTANT_H
#define TB_ACCOUNTANT_H

#include <stddef.h>
#include <stdint.h>

#include "tb_common.h"

typedef struct tb_acct_entry {
    uint64_t key;      /* storage id; 0 marks an empty slot */
    uint64_t bytes;    /* storage size in bytes */
    uint64_t holds;    /* live holds of this storage */
} tb_acct_entry;

typedef struct tb_accountant {
    tb_allocator alloc;      /* copied at init */
    tb_acct_entry *slots;    /* open addressing, linear probing; capacity a power of two */
    size_t capacity;
    size_t used;             /* slots with a key (tombstone-free: deletion shifts back) */
    uint64_t live_bytes;     /* bytes of storages with holds > 0 */
    uint64_t peak_bytes;     /* max of live_bytes since init or the last reset_peak */
    uint64_t n_hold, n_release, n_unpack, n_recompute;
    uint64_t recompute_bytes;
    double recompute_seconds;
} tb_accountant;

/* Initialise an empty accountant. `alloc` may be NULL (malloc/free). */
tb_status tb_acct_init(tb_accountant *acct, const tb_allocator *alloc);
/* Release the accountant's memory; the struct may be initialised again. */
void tb_acct_destroy(tb_accountant *acct);

/* One more hold of storage `key` (non-zero) of `bytes` bytes. A storage already held
 * keeps its first size. TB_ERR_INVALID for key 0, TB_ERR_NOMEM if the table cannot grow. */
tb_status tb_acct_hold(tb_accountant *acct, uint64_t key, uint64_t bytes);
/* One hold of `key` ends; when its last hold ends its bytes leave the live count.
 * TB_ERR_STATE if `key` is not held. */
tb_status tb_acct_release(tb_accountant *acct, uint64_t key);
/* A saved tensor of `key` was unpacked (event count only). */
void tb_acct_unpack(tb_accountant *acct);
/* A recomputation re-created `bytes` bytes in `seconds` seconds. TB_ERR_INVALID for
 * a negative or non-finite time. */
tb_status tb_acct_recompute(tb_accountant *acct, uint64_t bytes, double seconds);
/* Holds of `key` (0 if not held). */
uint64_t tb_acct_holds(const tb_accountant *acct, uint64_t key);
/* Start a new measurement: peak = live, event counters and recompute totals zeroed. */
void tb_acct_reset_peak(tb_accountant *acct);

#endif /* TB_ACCOUNTANT_H */
