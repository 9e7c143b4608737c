/* tiny-backprop C core: which op outputs a recompute region keeps (0/1 knapsack).
 * Pure C11; never includes Python.h.
 *
 * Item i (an op output inside a recomputed block) holds w[i] bytes from the block's
 * forward until its recomputation and saves v[i] of recompute cost. Given a capacity in
 * bytes, choose the items of largest total value whose weights fit. Weights are
 * discretised into at most `slots` units: unit = max(1, ceil(capacity / slots)), each
 * weight rounded UP, the capacity rounded DOWN, so a chosen set always fits the real
 * capacity; the answer is exact when every weight is a multiple of the unit (in
 * particular when capacity <= slots). O(n * slots) time, O(n * slots / 8) memory.
 */
#ifndef TB_KNAPSACK_H
#define TB_KNAPSACK_H

#include <stddef.h>
#include <stdint.h>

#include "tb_common.h"

/* Largest number of items and slots accepted. */
#define TB_KNAPSACK_MAX_ITEMS 1000000
#define TB_KNAPSACK_MAX_SLOTS 1000000
/* Largest table (n * (slots + 1) bits) accepted, in bytes. */
#define TB_KNAPSACK_MAX_TABLE_BYTES ((size_t)1 << 30)

/* Chooses items: chosen[i] = 1 for a chosen item, 0 otherwise (chosen has n entries).
 * *value = the chosen items' total value. w[i] in [0, 2^52], v[i] finite >= 0;
 * capacity >= 0; slots >= 1. Items with w[i] == 0 and v[i] > 0 are always chosen.
 * TB_ERR_INVALID for bad arguments, TB_ERR_LIMIT past the bounds above, TB_ERR_NOMEM,
 * TB_ERR_INTERRUPTED when `stop` asks (stop may be NULL). */
tb_status tb_knapsack(const tb_allocator *a, const tb_stop *stop, size_t n, const int64_t *w,
                      const double *v, int64_t capacity, int64_t slots, double *value,
                      uint8_t *chosen);

#endif /* TB_KNAPSACK_H */
