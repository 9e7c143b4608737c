/* tiny-backprop C core: graph creation, liveness analysis and coarsening.
 * See graph.h for the memory model. */
#include "graph.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NEW_ARRAY(ptr, count) \
    ((ptr) = tb_calloc(&g->alloc, (size_t)(count), sizeof(*(ptr))), (ptr) != NULL)

void tb_graph_destroy(tb_graph *g)
{
    if (g == NULL)
        return;
    tb_allocator a = g->alloc;
    tb_free(&a, g->output_bytes);
    tb_free(&a, g->saved_bytes);
    tb_free(&a, g->cost);
    tb_free(&a, g->flags);
    tb_free(&a, g->in_offsets);
    tb_free(&a, g->in_indices);
    tb_free(&a, g->order);
    tb_free(&a, g->pos);
    tb_free(&a, g->owner);
    tb_free(&a, g->last);
    tb_free(&a, g->frontier);
    tb_free(&a, g->saved);
    tb_free(&a, g);
}

int64_t tb_graph_root_bytes(const tb_graph *g, int64_t v)
{
    if (v < 0 || v >= g->n || g->owner[v] != v || (g->flags[v] & TB_FLAG_PARAM))
        return 0;
    return g->output_bytes[v];
}

/* ---- validation ---------------------------------------------------------------- */

static tb_status validate(int64_t n, const int64_t *output_bytes, const int64_t *saved_bytes,
                          const double *cost, const uint32_t *flags, const int64_t *in_offsets,
                          const int64_t *in_indices)
{
    if (n < 0 || (size_t)n > SIZE_MAX / 16 - 1)
        return TB_ERR_INVALID;
    if (n > 0 && (output_bytes == NULL || saved_bytes == NULL || cost == NULL || flags == NULL))
        return TB_ERR_INVALID;
    if (in_offsets == NULL || in_offsets[0] != 0)
        return TB_ERR_INVALID;
    int64_t total = 0;
    for (int64_t v = 0; v < n; v++) {
        if (output_bytes[v] < 0 || saved_bytes[v] < 0)
            return TB_ERR_INVALID;
        if (!isfinite(cost[v]) || cost[v] < 0.0)
            return TB_ERR_INVALID;
        if (flags[v] & ~TB_FLAG_ALL)
            return TB_ERR_INVALID;
        if (in_offsets[v + 1] < in_offsets[v])
            return TB_ERR_INVALID;
        if (output_bytes[v] > INT64_MAX - total)
            return TB_ERR_OVERFLOW;
        total += output_bytes[v];
        if (saved_bytes[v] > INT64_MAX - total)
            return TB_ERR_OVERFLOW;
        total += saved_bytes[v];
    }
    int64_t n_edges = in_offsets[n];
    if ((size_t)n_edges > SIZE_MAX / 16)
        return TB_ERR_INVALID;
    if (n_edges > 0 && in_indices == NULL)
        return TB_ERR_INVALID;
    for (int64_t v = 0; v < n; v++)
        for (int64_t e = in_offsets[v]; e < in_offsets[v + 1]; e++)
            if (in_indices[e] < 0 || in_indices[e] >= n || in_indices[e] == v)
                return TB_ERR_RANGE;
    return TB_OK;
}

/* ---- topological order --------------------------------------------------------- */

static void heap_push(int64_t *heap, int64_t *size, int64_t x)
{
    int64_t i = (*size)++;
    heap[i] = x;
    while (i > 0) {
        int64_t parent = (i - 1) / 2;
        if (heap[parent] <= heap[i])
            break;
        int64_t t = heap[parent];
        heap[parent] = heap[i];
        heap[i] = t;
        i = parent;
    }
}

static int64_t heap_pop(int64_t *heap, int64_t *size)
{
    int64_t top = heap[0];
    heap[0] = heap[--(*size)];
    int64_t i = 0;
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *size && heap[l] < heap[m])
            m = l;
        if (r < *size && heap[r] < heap[m])
            m = r;
        if (m == i)
            break;
        int64_t t = heap[m];
        heap[m] = heap[i];
        heap[i] = t;
        i = m;
    }
    return top;
}

/* Fills g->order. Kahn's algorithm, smallest ready index first, unless the index
 * order is already topological. */
static tb_status topo_sort(tb_graph *g)
{
    int64_t n = g->n;
    int sorted = 1;
    for (int64_t v = 0; v < n && sorted; v++)
        for (int64_t e = g->in_offsets[v]; e < g->in_offsets[v + 1]; e++)
            if (g->in_indices[e] >= v) {
                sorted = 0;
                break;
            }
    if (sorted) {
        for (int64_t v = 0; v < n; v++)
            g->order[v] = v;
        return TB_OK;
    }

    tb_status st = TB_ERR_NOMEM;
    int64_t *indeg = NULL, *cons_off = NULL, *cons = NULL, *heap = NULL, *fill = NULL;
    if (!NEW_ARRAY(indeg, n) || !NEW_ARRAY(cons_off, n + 1) || !NEW_ARRAY(cons, g->n_edges) ||
        !NEW_ARRAY(heap, n) || !NEW_ARRAY(fill, n))
        goto cleanup;
    /* consumers in CSR: an edge u -> v for every input u of v (duplicates kept) */
    for (int64_t e = 0; e < g->n_edges; e++)
        cons_off[g->in_indices[e] + 1]++;
    for (int64_t v = 0; v < n; v++)
        cons_off[v + 1] += cons_off[v];
    for (int64_t v = 0; v < n; v++) {
        indeg[v] = g->in_offsets[v + 1] - g->in_offsets[v];
        for (int64_t e = g->in_offsets[v]; e < g->in_offsets[v + 1]; e++) {
            int64_t u = g->in_indices[e];
            cons[cons_off[u] + fill[u]++] = v;
        }
    }
    int64_t hsize = 0, count = 0;
    for (int64_t v = 0; v < n; v++)
        if (indeg[v] == 0)
            heap_push(heap, &hsize, v);
    while (hsize > 0) {
        int64_t u = heap_pop(heap, &hsize);
        g->order[count++] = u;
        for (int64_t e = cons_off[u]; e < cons_off[u + 1]; e++)
            if (--indeg[cons[e]] == 0)
                heap_push(heap, &hsize, cons[e]);
    }
    st = count == n ? TB_OK : TB_ERR_CYCLE;
cleanup:
    tb_free(&g->alloc, indeg);
    tb_free(&g->alloc, cons_off);
    tb_free(&g->alloc, cons);
    tb_free(&g->alloc, heap);
    tb_free(&g->alloc, fill);
    return st;
}

/* ---- liveness ------------------------------------------------------------------ */

static tb_status analyze(tb_graph *g)
{
    int64_t n = g->n;
    tb_status st = TB_ERR_NOMEM;
    int64_t *delta = NULL, *held_delta = NULL, *stamp = NULL;
    unsigned char *saved = g->saved;
    if (!NEW_ARRAY(delta, n + 1) || !NEW_ARRAY(held_delta, n + 1) || !NEW_ARRAY(stamp, n))
        goto cleanup;

    for (int64_t p = 0; p < n; p++)
        g->pos[g->order[p]] = p;
    /* owners, in topological order so a first input's owner is known */
    for (int64_t p = 0; p < n; p++) {
        int64_t v = g->order[p];
        int has_input = g->in_offsets[v + 1] > g->in_offsets[v];
        if ((g->flags[v] & TB_FLAG_ALIAS) && has_input)
            g->owner[v] = g->owner[g->in_indices[g->in_offsets[v]]];
        else
            g->owner[v] = v;
    }
    for (int64_t v = 0; v < n; v++)
        g->last[v] = g->owner[v] == v ? g->pos[v] : -1;
    for (int64_t v = 0; v < n; v++) {
        for (int64_t e = g->in_offsets[v]; e < g->in_offsets[v + 1]; e++) {
            int64_t r = g->owner[g->in_indices[e]];
            if (g->last[r] < g->pos[v])
                g->last[r] = g->pos[v];
        }
    }
    for (int64_t v = 0; v < n; v++) {
        if (g->flags[v] & TB_FLAG_OUTPUT)
            g->last[g->owner[v]] = n;
        if (g->flags[v] & TB_FLAG_OUTPUT_SAVED)
            saved[g->owner[v]] = 1;
    }

    /* frontier and held bytes via difference arrays (totals fit: checked at create) */
    for (int64_t r = 0; r < n; r++) {
        int64_t b = tb_graph_root_bytes(g, r);
        if (g->owner[r] != r || b == 0)
            continue;
        if (g->last[r] > g->pos[r]) {
            delta[g->pos[r]] += b;
            delta[g->last[r]] -= b;
        }
        if (saved[r] && g->last[r] < n)
            held_delta[g->last[r]] += b;
    }
    int64_t live = 0, held_dead = 0, saved_extra = 0, peak = 0;
    for (int64_t p = 0; p < n; p++) {
        live += delta[p];
        held_dead += held_delta[p];
        saved_extra += g->saved_bytes[g->order[p]];
        g->frontier[p] = live;
        int64_t held = live + held_dead + saved_extra;
        if (held > peak)
            peak = held;
    }
    g->store_all_peak = peak;

    /* Lower bound. Why it is one: every schedule runs every node's backward once. The
     * graph's outputs are held from the end of the forward pass until backward is over
     * (the caller holds the loss), and when v's backward starts, what it saved (its
     * saved_bytes, its output if saved, its saved inputs) must exist; recomputation only
     * re-creates values, it never shrinks them, so those distinct storages coexist at
     * that moment in any schedule. And a value consumed later than it is produced exists
     * right after it is produced. Each storage is counted once (stamp). */
    int64_t out_bytes = 0;
    for (int64_t i = 0; i < n; i++)
        stamp[i] = -1;
    for (int64_t r = 0; r < n; r++)
        if (g->owner[r] == r && g->last[r] == n)
            out_bytes += tb_graph_root_bytes(g, r);
    int64_t lb = 0;
    for (int64_t v = 0; v < n; v++) {
        int64_t need = out_bytes + g->saved_bytes[v];
        for (int64_t e = g->in_offsets[v]; e <= g->in_offsets[v + 1]; e++) {
            /* e == in_offsets[v+1] stands for v itself */
            int64_t u = e < g->in_offsets[v + 1] ? g->in_indices[e] : v;
            if (!(g->flags[u] & TB_FLAG_OUTPUT_SAVED))
                continue;
            int64_t r = g->owner[u];
            if (g->last[r] == n || stamp[r] == v)
                continue;
            stamp[r] = v;
            need += tb_graph_root_bytes(g, r);
        }
        if (need > lb)
            lb = need;
    }
    for (int64_t r = 0; r < n; r++)
        if (g->owner[r] == r && g->last[r] > g->pos[r] && tb_graph_root_bytes(g, r) > lb)
            lb = tb_graph_root_bytes(g, r);
    g->lower_bound = lb;
    st = TB_OK;
cleanup:
    tb_free(&g->alloc, delta);
    tb_free(&g->alloc, held_delta);
    tb_free(&g->alloc, stamp);
    return st;
}

tb_status tb_graph_create(const tb_allocator *a, int64_t n, const int64_t *output_bytes,
                          const int64_t *saved_bytes, const double *cost,
                          const uint32_t *flags, const int64_t *in_offsets,
                          const int64_t *in_indices, tb_graph **out)
{
    if (out == NULL)
        return TB_ERR_INVALID;
    *out = NULL;
    tb_status st = validate(n, output_bytes, saved_bytes, cost, flags, in_offsets, in_indices);
    if (st != TB_OK)
        return st;
    tb_allocator alloc = {NULL, NULL, NULL};
    if (a != NULL)
        alloc = *a;
    tb_graph *g = tb_calloc(&alloc, 1, sizeof(tb_graph));
    if (g == NULL)
        return TB_ERR_NOMEM;
    g->alloc = alloc;
    g->n = n;
    g->n_edges = in_offsets[n];
    st = TB_ERR_NOMEM;
    if (!NEW_ARRAY(g->output_bytes, n) || !NEW_ARRAY(g->saved_bytes, n) ||
        !NEW_ARRAY(g->cost, n) || !NEW_ARRAY(g->flags, n) || !NEW_ARRAY(g->in_offsets, n + 1) ||
        !NEW_ARRAY(g->in_indices, g->n_edges) || !NEW_ARRAY(g->order, n) ||
        !NEW_ARRAY(g->pos, n) || !NEW_ARRAY(g->owner, n) || !NEW_ARRAY(g->last, n) ||
        !NEW_ARRAY(g->frontier, n) || !NEW_ARRAY(g->saved, n))
        goto error;
    if (n > 0) {
        memcpy(g->output_bytes, output_bytes, (size_t)n * sizeof(int64_t));
        memcpy(g->saved_bytes, saved_bytes, (size_t)n * sizeof(int64_t));
        memcpy(g->cost, cost, (size_t)n * sizeof(double));
        memcpy(g->flags, flags, (size_t)n * sizeof(uint32_t));
    }
    memcpy(g->in_offsets, in_offsets, (size_t)(n + 1) * sizeof(int64_t));
    if (g->n_edges > 0)
        memcpy(g->in_indices, in_indices, (size_t)g->n_edges * sizeof(int64_t));
    st = topo_sort(g);
    if (st != TB_OK)
        goto error;
    st = analyze(g);
    if (st != TB_OK)
        goto error;
    *out = g;
    return TB_OK;
error:
    tb_graph_destroy(g);
    return st;
}

/* ---- coarsening ---------------------------------------------------------------- */

static int is_trivial(const tb_graph *g, int64_t v)
{
    if (g->flags[v] & TB_FLAG_PARAM)
        return 1;
    return (g->flags[v] & TB_FLAG_INPUT) && g->in_offsets[v + 1] == g->in_offsets[v];
}

/* first index i in [lo, hi] with P[cand[i]] >= x (hi + 1 if none) */
static int64_t first_at_least(const double *prefix, const int64_t *cand, int64_t lo, int64_t hi,
                              double x)
{
    int64_t a = lo, b = hi + 1;
    while (a < b) {
        int64_t m = a + (b - a) / 2;
        if (prefix[cand[m]] >= x)
            b = m;
        else
            a = m + 1;
    }
    return a;
}

/* first index i in [lo, hi] with P[cand[i]] > x (hi + 1 if none) */
static int64_t first_above(const double *prefix, const int64_t *cand, int64_t lo, int64_t hi,
                           double x)
{
    int64_t a = lo, b = hi + 1;
    while (a < b) {
        int64_t m = a + (b - a) / 2;
        if (prefix[cand[m]] > x)
            b = m;
        else
            a = m + 1;
    }
    return a;
}

tb_status tb_graph_coarsen(const tb_graph *g, int64_t max_stages, tb_stage **stages_out,
                           int64_t *n_out)
{
    if (g == NULL || stages_out == NULL || n_out == NULL)
        return TB_ERR_INVALID;
    *stages_out = NULL;
    *n_out = 0;
    if (max_stages < 1)
        return TB_ERR_INVALID;
    int64_t n = g->n;
    if (n == 0)
        return TB_OK;

    tb_status st = TB_ERR_NOMEM;
    int64_t *cand = NULL, *starts = NULL;
    double *prefix = NULL;
    tb_stage *stages = NULL;
    if (!NEW_ARRAY(cand, n) || !NEW_ARRAY(starts, n + 1) || !NEW_ARRAY(prefix, n + 1))
        goto cleanup;

    /* candidates: non-trivial positions after the first non-trivial one */
    int64_t K = 0, M = 0;
    double total = 0.0;
    for (int64_t p = 0; p < n; p++) {
        int64_t v = g->order[p];
        total += g->cost[v];
        if (!is_trivial(g, v)) {
            if (K > 0)
                cand[M++] = p;
            K++;
        }
    }
    int use_counts = !(total > 0.0);
    prefix[0] = 0.0;
    for (int64_t p = 0; p < n; p++) {
        int64_t v = g->order[p];
        double w = use_counts ? (is_trivial(g, v) ? 0.0 : 1.0) : g->cost[v];
        prefix[p + 1] = prefix[p] + w;
    }
    double W = prefix[n];

    int64_t L; /* number of stages */
    starts[0] = 0;
    if (max_stages > M) {
        L = M + 1;
        for (int64_t i = 0; i < M; i++)
            starts[i + 1] = cand[i];
    } else {
        L = max_stages;
        double h = W / (2.0 * (double)L);
        int64_t lo = 0;
        for (int64_t j = 1; j < L; j++) {
            int64_t hi = M - L + j; /* leaves L - 1 - j candidates after it */
            double T = (double)j * W / (double)L;
            int64_t a = first_at_least(prefix, cand, lo, hi, T - h);
            int64_t b = first_above(prefix, cand, lo, hi, T + h); /* window = [a, b) */
            int64_t best = -1;
            if (a < b) {
                for (int64_t i = a; i < b; i++) {
                    if (best < 0) {
                        best = i;
                        continue;
                    }
                    int64_t fi = g->frontier[cand[i] - 1], fb = g->frontier[cand[best] - 1];
                    double di = fabs(prefix[cand[i]] - T), db = fabs(prefix[cand[best]] - T);
                    if (fi < fb || (fi == fb && di < db))
                        best = i;
                }
            } else {
                /* nearest allowed candidate below (a - 1, the first of its P) or above (a) */
                int64_t below = -1;
                if (a > lo)
                    below = first_at_least(prefix, cand, lo, a - 1, prefix[cand[a - 1]]);
                int64_t above = a <= hi ? a : -1;
                if (below < 0)
                    best = above;
                else if (above < 0)
                    best = below;
                else
                    best = fabs(prefix[cand[above]] - T) < fabs(prefix[cand[below]] - T) ? above
                                                                                         : below;
            }
            starts[j] = cand[best];
            lo = best + 1;
        }
    }
    starts[L] = n;

    if (!NEW_ARRAY(stages, L))
        goto cleanup;
    for (int64_t i = 0; i < L; i++) {
        tb_stage *s = &stages[i];
        s->start = starts[i];
        s->end = starts[i + 1];
        double fc = 0.0;
        int64_t saved = 0;
        int nr = 0;
        for (int64_t p = s->start; p < s->end; p++) {
            int64_t v = g->order[p];
            fc += g->cost[v];
            saved += g->saved_bytes[v];
            if (g->flags[v] & TB_FLAG_NEVER_RECOMPUTE)
                nr = 1;
        }
        /* saved roots made here that are not in the next boundary x_{i+1} */
        for (int64_t p = s->start; p < s->end; p++) {
            int64_t r = g->order[p];
            if (g->owner[r] == r && g->saved[r] && g->last[r] < s->end)
                saved += tb_graph_root_bytes(g, r);
        }
        s->forward_cost = fc;
        s->backward_cost = 2.0 * fc;
        s->saved_bytes = saved;
        s->never_recompute = nr;
        if (i > 0) {
            s->input_bytes = g->frontier[s->start - 1];
        } else {
            int64_t x0 = 0;
            for (int64_t r = 0; r < n; r++)
                if (g->owner[r] == r && (g->flags[r] & TB_FLAG_INPUT) && g->last[r] > g->pos[r])
                    x0 += tb_graph_root_bytes(g, r);
            s->input_bytes = x0;
        }
    }
    *stages_out = stages;
    *n_out = L;
    stages = NULL;
    st = TB_OK;
cleanup:
    tb_free(&g->alloc, cand);
    tb_free(&g->alloc, starts);
    tb_free(&g->alloc, prefix);
    tb_free(&g->alloc, stages);
    return st;
}

void tb_graph_free_stages(const tb_graph *g, tb_stage *stages)
{
    if (g != NULL)
        tb_free(&g->alloc, stages);
}

/* ---- live intervals ------------------------------------------------------------ */

typedef struct live_iv {
    int64_t j, u, bytes;
} live_iv;

static int live_iv_cmp(const void *pa, const void *pb)
{
    const live_iv *a = pa, *b = pb;
    if (a->j != b->j)
        return a->j < b->j ? -1 : 1;
    if (a->u != b->u)
        return a->u < b->u ? -1 : 1;
    return 0;
}

tb_status tb_graph_live_intervals(const tb_graph *g, const tb_stage *stages, int64_t L,
                                  int64_t **out, int64_t *count)
{
    if (g == NULL || out == NULL || count == NULL)
        return TB_ERR_INVALID;
    *out = NULL;
    *count = 0;
    int64_t n = g->n;
    if (n == 0 && L == 0)
        return TB_OK;
    if (stages == NULL || L < 1 || L > n || stages[0].start != 0 || stages[L - 1].end != n)
        return TB_ERR_INVALID;
    for (int64_t i = 0; i < L; i++)
        if (stages[i].end <= stages[i].start || (i > 0 && stages[i].start != stages[i - 1].end))
            return TB_ERR_INVALID;

    tb_status st = TB_ERR_NOMEM;
    int64_t *stage_of = NULL, *res = NULL;
    live_iv *iv = NULL;
    if (!NEW_ARRAY(stage_of, n) || !NEW_ARRAY(iv, n))
        goto cleanup;
    for (int64_t i = 0; i < L; i++)
        for (int64_t p = stages[i].start; p < stages[i].end; p++)
            stage_of[p] = i;
    int64_t m = 0;
    for (int64_t r = 0; r < n; r++) {
        int64_t b = tb_graph_root_bytes(g, r);
        if (g->owner[r] != r || b == 0 || (g->flags[r] & TB_FLAG_INPUT) ||
            g->last[r] <= g->pos[r])
            continue;
        int64_t j = stage_of[g->pos[r]];
        int64_t u = stage_of[g->last[r] < n ? g->last[r] : n - 1];
        if (j < u)
            iv[m++] = (live_iv){j, u, b};
    }
    if (m > 0) {
        qsort(iv, (size_t)m, sizeof(live_iv), live_iv_cmp);
        int64_t k = 0;
        for (int64_t i = 0; i < m; i++) {
            if (k > 0 && iv[k - 1].j == iv[i].j && iv[k - 1].u == iv[i].u)
                iv[k - 1].bytes += iv[i].bytes; /* totals fit: checked at create */
            else
                iv[k++] = iv[i];
        }
        if (!NEW_ARRAY(res, 3 * k))
            goto cleanup;
        for (int64_t i = 0; i < k; i++) {
            res[3 * i] = iv[i].j;
            res[3 * i + 1] = iv[i].u;
            res[3 * i + 2] = iv[i].bytes;
        }
        *out = res;
        *count = k;
        res = NULL;
    }
    st = TB_OK;
cleanup:
    tb_free(&g->alloc, stage_of);
    tb_free(&g->alloc, iv);
    tb_free(&g->alloc, res);
    return st;
}

void tb_graph_free_intervals(const tb_graph *g, int64_t *intervals)
{
    if (g != NULL)
        tb_free(&g->alloc, intervals);
}
