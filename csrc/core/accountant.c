#include "accountant.h"

#include <math.h>
#include <string.h>

#define TB_ACCT_MIN_CAPACITY 64u

static size_t slot_of(uint64_t key, size_t capacity)
{
    /* Storage ids are addresses: mix the bits so aligned keys spread (splitmix64 finaliser). */
    uint64_t z = key;
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    z ^= z >> 31;
    return (size_t)(z & (uint64_t)(capacity - 1));
}

tb_status tb_acct_init(tb_accountant *acct, const tb_allocator *alloc)
{
    if (acct == NULL)
        return TB_ERR_INVALID;
    memset(acct, 0, sizeof(*acct));
    if (alloc != NULL)
        acct->alloc = *alloc;
    acct->slots = tb_calloc(&acct->alloc, TB_ACCT_MIN_CAPACITY, sizeof(tb_acct_entry));
    if (acct->slots == NULL)
        return TB_ERR_NOMEM;
    acct->capacity = TB_ACCT_MIN_CAPACITY;
    return TB_OK;
}

void tb_acct_destroy(tb_accountant *acct)
{
    if (acct == NULL)
        return;
    tb_free(&acct->alloc, acct->slots);
    acct->slots = NULL;
    acct->capacity = 0;
    acct->used = 0;
}

static tb_acct_entry *find(const tb_accountant *acct, uint64_t key)
{
    size_t mask = acct->capacity - 1;
    for (size_t i = slot_of(key, acct->capacity);; i = (i + 1) & mask) {
        tb_acct_entry *e = &acct->slots[i];
        if (e->key == key)
            return e;
        if (e->key == 0)
            return NULL;
    }
}

static tb_status grow(tb_accountant *acct)
{
    if (acct->capacity > SIZE_MAX / 2 / sizeof(tb_acct_entry))
        return TB_ERR_OVERFLOW;
    size_t cap = acct->capacity * 2;
    tb_acct_entry *slots = tb_calloc(&acct->alloc, cap, sizeof(tb_acct_entry));
    if (slots == NULL)
        return TB_ERR_NOMEM;
    for (size_t j = 0; j < acct->capacity; j++) {
        tb_acct_entry e = acct->slots[j];
        if (e.key == 0)
            continue;
        size_t i = slot_of(e.key, cap);
        while (slots[i].key != 0)
            i = (i + 1) & (cap - 1);
        slots[i] = e;
    }
    tb_free(&acct->alloc, acct->slots);
    acct->slots = slots;
    acct->capacity = cap;
    return TB_OK;
}

tb_status tb_acct_hold(tb_accountant *acct, uint64_t key, uint64_t bytes)
{
    if (acct == NULL || acct->slots == NULL)
        return TB_ERR_STATE;
    if (key == 0)
        return TB_ERR_INVALID;
    tb_acct_entry *e = find(acct, key);
    if (e != NULL) {
        e->holds++;
        acct->n_hold++;
        return TB_OK;
    }
    if ((acct->used + 1) * 4 > acct->capacity * 3) { /* keep load <= 3/4 */
        tb_status st = grow(acct);
        if (st != TB_OK)
            return st;
    }
    if (bytes > UINT64_MAX - acct->live_bytes)
        return TB_ERR_OVERFLOW;
    size_t mask = acct->capacity - 1;
    size_t i = slot_of(key, acct->capacity);
    while (acct->slots[i].key != 0)
        i = (i + 1) & mask;
    acct->slots[i].key = key;
    acct->slots[i].bytes = bytes;
    acct->slots[i].holds = 1;
    acct->used++;
    acct->n_hold++;
    acct->live_bytes += bytes;
    if (acct->live_bytes > acct->peak_bytes)
        acct->peak_bytes = acct->live_bytes;
    return TB_OK;
}

/* Remove slot i and shift later entries of its probe run back (no tombstones). */
static void erase_at(tb_accountant *acct, size_t i)
{
    size_t mask = acct->capacity - 1;
    size_t j = i;
    acct->slots[i].key = 0;
    for (;;) {
        j = (j + 1) & mask;
        if (acct->slots[j].key == 0)
            break;
        size_t home = slot_of(acct->slots[j].key, acct->capacity);
        /* move j to i if home is not cyclically in (i, j] */
        int in_range = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
        if (!in_range) {
            acct->slots[i] = acct->slots[j];
            acct->slots[j].key = 0;
            i = j;
        }
    }
    acct->used--;
}

tb_status tb_acct_release(tb_accountant *acct, uint64_t key)
{
    if (acct == NULL || acct->slots == NULL)
        return TB_ERR_STATE;
    if (key == 0)
        return TB_ERR_INVALID;
    tb_acct_entry *e = find(acct, key);
    if (e == NULL)
        return TB_ERR_STATE;
    acct->n_release++;
    if (--e->holds == 0) {
        acct->live_bytes -= e->bytes;
        erase_at(acct, (size_t)(e - acct->slots));
    }
    return TB_OK;
}

void tb_acct_unpack(tb_accountant *acct)
{
    if (acct != NULL)
        acct->n_unpack++;
}

tb_status tb_acct_recompute(tb_accountant *acct, uint64_t bytes, double seconds)
{
    if (acct == NULL)
        return TB_ERR_STATE;
    if (!isfinite(seconds) || seconds < 0.0)
        return TB_ERR_INVALID;
    if (bytes > UINT64_MAX - acct->recompute_bytes)
        return TB_ERR_OVERFLOW;
    acct->n_recompute++;
    acct->recompute_bytes += bytes;
    acct->recompute_seconds += seconds;
    return TB_OK;
}

uint64_t tb_acct_holds(const tb_accountant *acct, uint64_t key)
{
    if (acct == NULL || acct->slots == NULL || key == 0)
        return 0;
    const tb_acct_entry *e = find(acct, key);
    return e == NULL ? 0 : e->holds;
}

void tb_acct_reset_peak(tb_accountant *acct)
{
    if (acct == NULL)
        return;
    acct->peak_bytes = acct->live_bytes;
    acct->n_hold = acct->n_release = acct->n_unpack = acct->n_recompute = 0;
    acct->recompute_bytes = 0;
    acct->recompute_seconds = 0.0;
}
