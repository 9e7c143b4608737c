/* 0/1 knapsack over discretised bytes with a reconstruction bit table. */
#include "knapsack.h"

#include <math.h>
#include <string.h>

#define TB_KS_POLL 4096u

static int ks_should_stop(const tb_stop *stop)
{
    return stop != NULL && stop->should_stop != NULL && stop->should_stop(stop->ctx);
}

tb_status tb_knapsack(const tb_allocator *a, const tb_stop *stop, size_t n, const int64_t *w,
                      const double *v, int64_t capacity, int64_t slots, double *value,
                      uint8_t *chosen)
{
    if (value == NULL || (n > 0 && (w == NULL || v == NULL || chosen == NULL)) ||
        capacity < 0 || slots < 1)
        return TB_ERR_INVALID;
    if (n > TB_KNAPSACK_MAX_ITEMS || slots > TB_KNAPSACK_MAX_SLOTS)
        return TB_ERR_LIMIT;
    for (size_t i = 0; i < n; i++) {
        if (w[i] < 0 || w[i] > ((int64_t)1 << 52) || !isfinite(v[i]) || v[i] < 0.0)
            return TB_ERR_INVALID;
    }
    *value = 0.0;
    if (n == 0)
        return TB_OK;
    memset(chosen, 0, n);
    int64_t unit = capacity / slots + (capacity % slots != 0);
    if (unit < 1)
        unit = 1;
    size_t cap = (size_t)(capacity / unit); /* rounded down: never over the capacity */
    size_t width = cap + 1;
    size_t row_bytes = (width + 7) / 8;
    if (row_bytes != 0 && n > TB_KNAPSACK_MAX_TABLE_BYTES / row_bytes)
        return TB_ERR_LIMIT;
    double *best = tb_calloc(a, width, sizeof(double));
    uint8_t *take = tb_calloc(a, n * row_bytes, 1);
    size_t *units = tb_malloc(a, n * sizeof(size_t));
    if (best == NULL || take == NULL || units == NULL) {
        tb_free(a, best);
        tb_free(a, take);
        tb_free(a, units);
        return TB_ERR_NOMEM;
    }
    tb_status st = TB_OK;
    unsigned poll = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t u = w[i] / unit + (w[i] % unit != 0); /* rounded up */
        units[i] = (size_t)u;
        if (v[i] <= 0.0 || (size_t)u > cap)
            continue;
        uint8_t *row = take + i * row_bytes;
        for (size_t c = cap + 1; c-- > units[i];) {
            double cand = best[c - units[i]] + v[i];
            if (cand > best[c]) {
                best[c] = cand;
                row[c / 8] |= (uint8_t)(1u << (c % 8));
            }
        }
        if (++poll % TB_KS_POLL == 0 && ks_should_stop(stop)) {
            st = TB_ERR_INTERRUPTED;
            break;
        }
    }
    if (st == TB_OK) {
        size_t c = cap;
        for (size_t i = n; i-- > 0;) {
            const uint8_t *row = take + i * row_bytes;
            if (row[c / 8] & (1u << (c % 8))) {
                chosen[i] = 1;
                c -= units[i];
            }
        }
        double total = 0.0;
        for (size_t i = 0; i < n; i++)
            total += chosen[i] ? v[i] : 0.0;
        *value = total;
    }
    tb_free(a, best);
    tb_free(a, take);
    tb_free(a, units);
    return st;
}
