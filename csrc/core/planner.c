/* tiny-backprop C core: checkpoint planners (optimal chain DP + baselines) and the
 * plan simulator. See planner.h for the model and the tree encoding. */
/* The DP's inner loops over memory are plain min/add streams: let GCC vectorise them. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include "planner.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define TB_INF HUGE_VAL

/* ---------------------------------------------------------------- cancellation */

/* Work units (about one inner-loop step each) between two polls of the stop hook:
 * a few milliseconds of work, so an interrupt is seen well within a second. */
#define TB_POLL_WORK ((uint64_t)1 << 22)

typedef struct tb_poll {
    const tb_stop *stop;
    uint64_t work;
} tb_poll;

/* Adds `work` units; polls the hook once enough work was done. Nonzero = stop. */
static int poll_stop(tb_poll *p, uint64_t work)
{
    p->work += work;
    if (p->work < TB_POLL_WORK)
        return 0;
    p->work = 0;
    return p->stop != NULL && p->stop->should_stop != NULL &&
           p->stop->should_stop(p->stop->ctx) != 0;
}

/* ---------------------------------------------------------------- plan trees */

void tb_plan_tree_free(const tb_allocator *a, tb_plan_tree *tree)
{
    if (tree == NULL)
        return;
    tb_free(a, tree->kind);
    tb_free(a, tree->start);
    tb_free(a, tree->end);
    tb_free(a, tree->opt);
    memset(tree, 0, sizeof(*tree));
}

static tb_status tree_reserve(const tb_allocator *a, tb_plan_tree *tree, size_t need)
{
    if (need <= tree->cap)
        return TB_OK;
    size_t cap = tree->cap ? tree->cap : 16;
    while (cap < need) {
        if (cap > SIZE_MAX / 2 / sizeof(int32_t))
            return TB_ERR_OVERFLOW;
        cap *= 2;
    }
    uint8_t *kind = tb_malloc(a, cap * sizeof(uint8_t));
    int32_t *start = tb_malloc(a, cap * sizeof(int32_t));
    int32_t *end = tb_malloc(a, cap * sizeof(int32_t));
    int32_t *opt = tb_malloc(a, cap * sizeof(int32_t));
    if (kind == NULL || start == NULL || end == NULL || opt == NULL) {
        tb_free(a, kind);
        tb_free(a, start);
        tb_free(a, end);
        tb_free(a, opt);
        return TB_ERR_NOMEM;
    }
    if (tree->n_nodes) {
        memcpy(kind, tree->kind, tree->n_nodes * sizeof(uint8_t));
        memcpy(start, tree->start, tree->n_nodes * sizeof(int32_t));
        memcpy(end, tree->end, tree->n_nodes * sizeof(int32_t));
        for (size_t j = 0; j < tree->n_nodes; j++)
            opt[j] = tree->opt != NULL ? tree->opt[j] : -1;
    }
    tb_free(a, tree->kind);
    tb_free(a, tree->start);
    tb_free(a, tree->end);
    tb_free(a, tree->opt);
    tree->kind = kind;
    tree->start = start;
    tree->end = end;
    tree->opt = opt;
    tree->cap = cap;
    return TB_OK;
}

static tb_status tree_push_opt(const tb_allocator *a, tb_plan_tree *tree, int kind,
                               size_t start, size_t end, int32_t opt)
{
    tb_status st = tree_reserve(a, tree, tree->n_nodes + 1);
    if (st != TB_OK)
        return st;
    tree->kind[tree->n_nodes] = (uint8_t)kind;
    tree->start[tree->n_nodes] = (int32_t)start;
    tree->end[tree->n_nodes] = (int32_t)end;
    tree->opt[tree->n_nodes] = opt;
    tree->n_nodes++;
    return TB_OK;
}

static tb_status tree_push(const tb_allocator *a, tb_plan_tree *tree, int kind, size_t start,
                           size_t end)
{
    return tree_push_opt(a, tree, kind, start, end, -1);
}

/* ---------------------------------------------------------------- chain checks */

double tb_max_cost_sum(size_t n)
{
    return DBL_MAX / 4.0 / ((double)n + 1.0);
}

tb_status tb_chain_check(const tb_chain *c)
{
    if (c == NULL || c->n == 0 || c->n > TB_MAX_STAGES || c->f == NULL || c->b == NULL ||
        c->x == NULL || c->g == NULL)
        return TB_ERR_INVALID;
    int64_t total = 0;
    double cost_sum = 0.0, cost_max = tb_max_cost_sum(c->n);
    for (size_t i = 0; i < c->n; i++) {
        if (!isfinite(c->f[i]) || !isfinite(c->b[i]) || c->f[i] < 0 || c->b[i] < 0)
            return TB_ERR_INVALID;
        /* each term <= DBL_MAX / 8 once the sum is under cost_max: no overflow */
        if (c->f[i] > cost_max || c->b[i] > cost_max)
            return TB_ERR_OVERFLOW;
        cost_sum += c->f[i] + c->b[i];
        if (cost_sum > cost_max)
            return TB_ERR_OVERFLOW;
        if (c->x[i] < 0 || c->g[i] < 0)
            return TB_ERR_INVALID;
        if (c->x[i] > TB_MAX_BYTES || c->g[i] > TB_MAX_BYTES)
            return TB_ERR_OVERFLOW;
        total += c->x[i] + c->g[i];
        if (total > TB_MAX_BYTES)
            return TB_ERR_OVERFLOW;
        if (c->w != NULL) {
            if (c->w[i] < 0)
                return TB_ERR_INVALID;
            if (c->w[i] > TB_MAX_BYTES)
                return TB_ERR_OVERFLOW;
            total += c->w[i];
            if (total > TB_MAX_BYTES)
                return TB_ERR_OVERFLOW;
        }
    }
    if (c->n_live > 0 && c->live == NULL)
        return TB_ERR_INVALID;
    if (c->n_live > TB_MAX_LIVE)
        return TB_ERR_OVERFLOW;
    for (size_t i = 0; i < c->n_live; i++) {
        int64_t j = c->live[3 * i], u = c->live[3 * i + 1], by = c->live[3 * i + 2];
        if (j < 0 || u <= j || u >= (int64_t)c->n)
            return TB_ERR_RANGE;
        if (by < 0)
            return TB_ERR_INVALID;
        if (by > TB_MAX_BYTES)
            return TB_ERR_OVERFLOW;
        total += by;
        if (total > TB_MAX_BYTES)
            return TB_ERR_OVERFLOW;
    }
    if (c->n_opt == 0)
        return TB_OK;
    if (c->opt_first == NULL || c->opt_bytes == NULL || c->opt_save == NULL ||
        c->n_opt > TB_MAX_OPTIONS || c->opt_first[0] != 0 ||
        (size_t)c->opt_first[c->n] != c->n_opt)
        return TB_ERR_INVALID;
    for (size_t i = 0; i < c->n; i++) {
        if (c->opt_first[i + 1] < c->opt_first[i])
            return TB_ERR_INVALID;
        for (int32_t o = c->opt_first[i]; o < c->opt_first[i + 1]; o++) {
            int64_t e = c->opt_bytes[o], v = c->opt_overlap != NULL ? c->opt_overlap[o] : 0;
            double r = c->opt_save[o];
            if (e < 0 || !isfinite(r) || r < 0 || r > c->f[i] || v < 0 || v > e)
                return TB_ERR_INVALID;
            if (e > TB_MAX_BYTES)
                return TB_ERR_OVERFLOW;
            total += e;
            if (total > TB_MAX_BYTES)
                return TB_ERR_OVERFLOW;
        }
    }
    return TB_OK;
}

/* Number of options of stage s (0 without options). */
static size_t n_options(const tb_chain *c, size_t s)
{
    if (c->n_opt == 0)
        return 0;
    return (size_t)(c->opt_first[s + 1] - c->opt_first[s]);
}

int64_t tb_chain_new_bytes(const tb_chain *c, size_t s, size_t k)
{
    if (c->n_live == 0)
        return c->x[k];
    int64_t sum = 0, S = (int64_t)s, K = (int64_t)k;
    for (size_t i = 0; i < c->n_live; i++) {
        int64_t j = c->live[3 * i], u = c->live[3 * i + 1];
        if (S <= j && j < K && K <= u)
            sum += c->live[3 * i + 2];
    }
    return sum;
}

int64_t tb_chain_transient_bytes(const tb_chain *c, size_t s, size_t k)
{
    int64_t best = 0;
    for (size_t j = s; j < k; j++) {
        int64_t v = (j > s ? tb_chain_new_bytes(c, s, j) : 0) + tb_chain_new_bytes(c, j, j + 1);
        if (v > best)
            best = v;
    }
    return best;
}

/* Bytes a region [s, e) needs while its forward runs. Its last stage's output, when
 * there is one (e <= L-1), is new memory even if an enclosing level holds the original. */
static int64_t region_transient(const tb_chain *c, size_t s, size_t e)
{
    if (!c->transient)
        return 0;
    if (e < c->n)
        return tb_chain_transient_bytes(c, s, e);
    return e - 1 > s ? tb_chain_transient_bytes(c, s, e - 1) : 0;
}

/* w[s]: the working bytes of stage s's backward (0 without them). */
static int64_t work_bytes(const tb_chain *c, size_t s)
{
    return c->w != NULL ? c->w[s] : 0;
}

/* Bytes the last stage s of a sequence needs while it runs: its saved bytes plus the
 * larger of its backward's working bytes and, with the transient term and s < L-1 (a
 * recomputation), the new copy of its output. */
static int64_t leaf_bytes(const tb_chain *c, size_t s)
{
    int64_t extra = work_bytes(c, s);
    if (c->transient && s + 1 < c->n) {
        int64_t d = tb_chain_new_bytes(c, s, s + 1);
        extra = d > extra ? d : extra;
    }
    return c->g[s] + extra;
}

static int is_must_keep(const tb_chain *c, size_t i)
{
    return c->must_keep != NULL && c->must_keep[i] != 0;
}

/* Boundary i (1 <= i <= n-1) may not be inside a region. */
static int is_cut(const tb_chain *c, size_t i)
{
    return c->cut != NULL && i >= 1 && i < c->n && c->cut[i] != 0;
}

/* ---------------------------------------------------------------- simulator */

typedef struct sim_frame {
    size_t t;        /* last stage of this sequence */
    size_t next;     /* next stage expected */
    int64_t cur;     /* bytes held now at this level */
    size_t rs, re;   /* region owning this sequence (rs == re: top level) */
} sim_frame;

/* Walks the preorder nodes keeping a stack of open sequences. A region's backward runs
 * after everything that follows it at its level has finished, so its children see the
 * bytes held when the region started (x[start] included, its output not). */
tb_status tb_simulate(const tb_allocator *a, const tb_chain *c, const tb_plan_tree *tree,
                      double *cost, int64_t *peak)
{
    return tb_simulate_ex(a, NULL, c, tree, cost, peak);
}

tb_status tb_simulate_ex(const tb_allocator *a, const tb_stop *stop, const tb_chain *c,
                         const tb_plan_tree *tree, double *cost, int64_t *peak)
{
    tb_poll poll = {stop, 0};
    tb_status st = tb_chain_check(c);
    if (st != TB_OK)
        return st;
    if (tree == NULL || tree->n_nodes == 0 || tree->n_nodes > (size_t)4 * c->n + 4)
        return TB_ERR_INVALID;
    sim_frame *stack = tb_malloc(a, (tree->n_nodes + 1) * sizeof(sim_frame));
    if (stack == NULL)
        return TB_ERR_NOMEM;
    size_t depth = 1;
    stack[0] = (sim_frame){c->n - 1, 0, c->x[0], 0, 0};
    double total = 0.0;
    int64_t pk = c->x[0];
    st = TB_ERR_INVALID;
    for (size_t j = 0; j < tree->n_nodes; j++) {
        if (depth == 0)
            goto done; /* nodes after the top level is complete */
        /* a node costs up to its stages plus a few d() of O(n_live) each */
        int64_t span = (int64_t)tree->end[j] - (int64_t)tree->start[j];
        if (poll_stop(&poll, (uint64_t)c->n_live * 4 + 1 + (uint64_t)(span > 0 ? span : 0))) {
            st = TB_ERR_INTERRUPTED;
            goto done;
        }
        sim_frame *fr = &stack[depth - 1];
        int32_t s0 = tree->start[j], e0 = tree->end[j];
        if (s0 < 0 || e0 <= s0)
            goto done;
        size_t s = (size_t)s0, e = (size_t)e0;
        if (s != fr->next || e - 1 > fr->t)
            goto done;
        if (tree->kind[j] == TB_NODE_KEEP) {
            if (e != s + 1 || (tree->opt != NULL && tree->opt[j] != -1))
                goto done;
            total += c->f[s] + c->b[s];
            if (s == fr->t) {
                if (fr->cur + leaf_bytes(c, s) > pk)
                    pk = fr->cur + leaf_bytes(c, s);
            } else {
                /* its backward, later, holds what this level holds now plus g and w */
                if (fr->cur + c->g[s] + work_bytes(c, s) > pk)
                    pk = fr->cur + c->g[s] + work_bytes(c, s);
                fr->cur += c->g[s] + tb_chain_new_bytes(c, s, s + 1);
                if (fr->cur > pk)
                    pk = fr->cur;
            }
            fr->next = e;
        } else if (tree->kind[j] == TB_NODE_REGION) {
            if (fr->rs == s && fr->re == e)
                goto done; /* a region whose only child is the same region */
            for (size_t i = s; i < e; i++) {
                if (is_must_keep(c, i) || (i > s && is_cut(c, i)))
                    goto done;
                total += c->f[i];
            }
            int64_t inner = 0;
            int32_t o = tree->opt != NULL ? tree->opt[j] : -1;
            if (o >= 0) { /* an option: top level, one stage, not the last */
                if (depth != 1 || e != s + 1 || e >= c->n || (size_t)o >= n_options(c, s))
                    goto done;
                size_t oi = (size_t)c->opt_first[s] + (size_t)o;
                fr->cur += c->opt_bytes[oi]; /* held from here until its backward */
                total -= c->opt_save[oi];    /* its recomputation is cheaper */
                /* inside the recomputation the overlapping bytes are the saved ones */
                inner = c->opt_overlap != NULL ? c->opt_overlap[oi] : 0;
            } else if (o != -1) {
                goto done;
            }
            int64_t held = fr->cur;
            int64_t tr = region_transient(c, s, e);
            if (held + tr > pk)
                pk = held + tr;
            if (e - 1 != fr->t) {
                fr->cur += tb_chain_new_bytes(c, s, e);
                if (fr->cur > pk)
                    pk = fr->cur;
            }
            fr->next = e;
            stack[depth++] = (sim_frame){e - 1, s, held - inner, s, e};
        } else {
            goto done;
        }
        /* close every finished sequence except the top level */
        while (depth > 1 && stack[depth - 1].next == stack[depth - 1].t + 1)
            depth--;
        if (depth == 1 && stack[0].next == c->n)
            depth = 0;
    }
    if (depth == 0) {
        st = TB_OK;
        *cost = total;
        *peak = pk;
    }
done:
    tb_free(a, stack);
    return st;
}

/* ---------------------------------------------------------------- helpers */

static size_t tri(size_t s, size_t t) { return t * (t + 1) / 2 + s; }

/* nk[s] = the smaller of the first i >= s with must_keep[i] and the first cut
 * boundary b > s (n if neither): a region [s, k) is a choice iff k - 1 < nk[s]. */
static size_t *next_must_keep(const tb_allocator *a, const tb_chain *c)
{
    size_t *nk = tb_malloc(a, (c->n + 1) * sizeof(size_t));
    if (nk == NULL)
        return NULL;
    nk[c->n] = c->n;
    for (size_t i = c->n; i-- > 0;)
        nk[i] = is_must_keep(c, i) ? i : nk[i + 1];
    size_t nc = c->n; /* first cut boundary > i */
    for (size_t i = c->n; i-- > 0;) {
        if (nc < nk[i])
            nk[i] = nc;
        if (is_cut(c, i))
            nc = i;
    }
    return nk;
}

/* d(s, k) of every 0 <= s < k <= n-1 at index tri(s, k) (entries s == k are 0), in
 * bytes. Intervals: add each at (j, u), suffix-sum over k (bytes made in j and live at
 * k), then sum over j in [s, k). O(n^2 + n_live). NULL when out of memory. */
static int64_t *new_bytes_table(const tb_allocator *a, const tb_chain *c, tb_poll *poll,
                                tb_status *st)
{
    size_t n = c->n, rows = n * (n + 1) / 2;
    int64_t *d = tb_calloc(a, rows, sizeof(int64_t));
    *st = TB_ERR_NOMEM;
    if (d == NULL)
        return NULL;
    *st = TB_ERR_INTERRUPTED;
    if (c->n_live == 0) {
        for (size_t k = 1; k < n; k++) {
            if (poll_stop(poll, k))
                goto stop;
            for (size_t s = 0; s < k; s++)
                d[tri(s, k)] = c->x[k];
        }
        *st = TB_OK;
        return d;
    }
    for (size_t i = 0; i < c->n_live; i++) {
        if (poll_stop(poll, 1))
            goto stop;
        d[tri((size_t)c->live[3 * i], (size_t)c->live[3 * i + 1])] += c->live[3 * i + 2];
    }
    for (size_t j = 0; j + 1 < n; j++) {
        if (poll_stop(poll, n - j))
            goto stop;
        for (size_t k = n - 1; k-- > j + 1;)
            d[tri(j, k)] += d[tri(j, k + 1)];
    }
    for (size_t k = 1; k < n; k++) {
        if (poll_stop(poll, k))
            goto stop;
        for (size_t s = k - 1; s-- > 0;)
            d[tri(s, k)] += d[tri(s + 1, k)];
    }
    *st = TB_OK;
    return d;
stop:
    tb_free(a, d);
    return NULL;
}

/* tr(s, k) for 0 <= s < k <= n-1 at index tri(s, k), in bytes, from the d table:
 * tr(s, k) = max(tr(s, k-1), d(s, k-1) + d(k-1, k)), d(s, s) = 0. All zero when the
 * chain has no transient term. NULL when out of memory. */
static int64_t *transient_table(const tb_allocator *a, const tb_chain *c, const int64_t *d,
                                tb_poll *poll, tb_status *st)
{
    size_t n = c->n, rows = n * (n + 1) / 2;
    int64_t *tr = tb_calloc(a, rows, sizeof(int64_t));
    *st = tr == NULL ? TB_ERR_NOMEM : TB_OK;
    if (tr == NULL || !c->transient)
        return tr;
    for (size_t s = 0; s + 1 < n; s++) {
        if (poll_stop(poll, n - s)) {
            tb_free(a, tr);
            *st = TB_ERR_INTERRUPTED;
            return NULL;
        }
        int64_t best = 0;
        for (size_t k = s + 1; k < n; k++) {
            int64_t v = (k - 1 > s ? d[tri(s, k - 1)] : 0) + d[tri(k - 1, k)];
            if (v > best)
                best = v;
            tr[tri(s, k)] = best;
        }
    }
    return tr;
}

/* ---------------------------------------------------------------- min budget */

/* Bytes of the O(n^2) per-row tables (row_bytes each), or UINT64_MAX on overflow. */
static uint64_t table_bytes(size_t n, uint64_t row_bytes)
{
    uint64_t rows = (uint64_t)n * ((uint64_t)n + 1) / 2;
    return rows > UINT64_MAX / row_bytes ? UINT64_MAX : rows * row_bytes;
}

tb_status tb_min_budget(const tb_allocator *a, const tb_chain *c, int64_t *min_bytes,
                        double *cost, tb_plan_tree *tree)
{
    return tb_min_budget_ex(a, NULL, c, min_bytes, cost, tree);
}

tb_status tb_min_budget_ex(const tb_allocator *a, const tb_stop *stop, const tb_chain *c,
                           int64_t *min_bytes, double *cost, tb_plan_tree *tree)
{
    tb_poll poll = {stop, 0};
    tb_status st = tb_chain_check(c);
    if (st != TB_OK)
        return st;
    size_t n = c->n, rows = n * (n + 1) / 2;
    /* mm, mc, dd, tt: 8 bytes a row each; ch: 4 */
    if (table_bytes(n, 36) > TB_MAX_PLAN_BYTES)
        return TB_ERR_LIMIT;
    int64_t *mm = tb_malloc(a, rows * sizeof(int64_t));
    double *mc = tb_malloc(a, rows * sizeof(double));
    int32_t *ch = tb_malloc(a, rows * sizeof(int32_t));
    size_t *nk = next_must_keep(a, c);
    size_t *stk = tb_malloc(a, (2 * n + 2) * sizeof(size_t));
    int64_t *dd = new_bytes_table(a, c, &poll, &st);
    int64_t *tt = dd == NULL ? NULL : transient_table(a, c, dd, &poll, &st);
    if (dd == NULL || tt == NULL)
        goto done; /* st says why */
    if (mm == NULL || mc == NULL || ch == NULL || nk == NULL || stk == NULL) {
        st = TB_ERR_NOMEM;
        goto done;
    }
    for (size_t t = 0; t < n; t++) {
        for (size_t s = t + 1; s-- > 0;) {
            if (poll_stop(&poll, t - s + 1)) {
                st = TB_ERR_INTERRUPTED;
                goto done;
            }
            size_t r = tri(s, t);
            if (s == t) {
                mm[r] = leaf_bytes(c, s);
                mc[r] = c->f[s] + c->b[s];
                ch[r] = -1;
                continue;
            }
            /* keep s */
            int64_t bm = c->g[s] + dd[tri(s, s + 1)] + mm[tri(s + 1, t)];
            if (c->g[s] + work_bytes(c, s) > bm)
                bm = c->g[s] + work_bytes(c, s);
            double bc = c->f[s] + c->b[s] + mc[tri(s + 1, t)];
            int32_t bk = -1;
            double F = 0.0;
            for (size_t k = s + 1; k <= t && k - 1 < nk[s]; k++) {
                F += c->f[k - 1];
                int64_t m1 = dd[tri(s, k)] + mm[tri(k, t)], m2 = mm[tri(s, k - 1)];
                int64_t vm = m1 > m2 ? m1 : m2;
                if (tt[tri(s, k)] > vm)
                    vm = tt[tri(s, k)];
                double vc = F + mc[tri(k, t)] + mc[tri(s, k - 1)];
                if (vm < bm || (vm == bm && vc < bc)) {
                    bm = vm;
                    bc = vc;
                    bk = (int32_t)k;
                }
            }
            mm[r] = bm;
            mc[r] = bc;
            ch[r] = bk;
        }
    }
    *min_bytes = c->x[0] + mm[tri(0, n - 1)];
    *cost = mc[tri(0, n - 1)];
    if (tree != NULL) {
        /* emit in preorder: stack of pending (s, t) sequences */
        size_t sp = 0;
        stk[sp++] = 0;
        stk[sp++] = n - 1;
        while (sp > 0) {
            size_t t = stk[--sp], s = stk[--sp];
            for (;;) {
                int32_t k = ch[tri(s, t)];
                if (s == t || k < 0) {
                    st = tree_push(a, tree, TB_NODE_KEEP, s, s + 1);
                    if (st != TB_OK)
                        goto done;
                    if (s == t)
                        break;
                    s++;
                    continue;
                }
                st = tree_push(a, tree, TB_NODE_REGION, s, (size_t)k);
                if (st != TB_OK)
                    goto done;
                stk[sp++] = (size_t)k;
                stk[sp++] = t;
                t = (size_t)k - 1;
            }
        }
    }
    st = TB_OK;
done:
    tb_free(a, mm);
    tb_free(a, mc);
    tb_free(a, ch);
    tb_free(a, nk);
    tb_free(a, stk);
    tb_free(a, dd);
    tb_free(a, tt);
    return st;
}

/* ---------------------------------------------------------------- optimal DP */

static int64_t ceil_div(int64_t v, int64_t u) { return v / u + (v % u != 0); }

/* Slot size of `bytes`, clamped to cap (anything above cap never fits). */
static int64_t to_slots(int64_t bytes, int64_t unit, int64_t cap)
{
    int64_t v = ceil_div(bytes, unit);
    return v > cap ? cap : v;
}

/* Rows of the DP. Row r = tri(s, t) stores opt(s, t, m) only for m in [lo[r], top[r]]:
 * below lo[r] (the least feasible memory) it is infinite, and above hi[r] (a memory
 * from which every choice is feasible and constant) it equals its value at hi[r];
 * top[r] = min(hi[r], W - 1). Entries live at T[off[r] + m - lo[r]]. */
typedef struct dp_rows {
    double *T;
    size_t *lo, *top, *off;
} dp_rows;

static double dp_get(const dp_rows *R, size_t r, size_t m)
{
    if (m < R->lo[r])
        return TB_INF;
    if (m > R->top[r])
        m = R->top[r];
    return R->T[R->off[r] + (m - R->lo[r])];
}

/* row[m - rlo] = min(row[m - rlo], F + A(m - shift) + B(m)) for m in [m0, m1], where
 * A = row ra and B = row rb (rb == SIZE_MAX: B = 0), both feasible there. Split into
 * pieces where each operand is either a contiguous stream or constant. */
static void dp_relax(const dp_rows *R, double *row, size_t rlo, size_t m0, size_t m1, double F,
                     size_t ra, size_t shift, size_t rb)
{
    const double *A = R->T + R->off[ra];
    size_t aLo = R->lo[ra], aEnd = R->top[ra] + shift; /* A direct for m <= aEnd */
    const double *B = rb == SIZE_MAX ? NULL : R->T + R->off[rb];
    size_t bLo = B ? R->lo[rb] : 0, bEnd = B ? R->top[rb] : SIZE_MAX;
    size_t m = m0;
    while (m <= m1) {
        size_t e = m1;
        int ca = m > aEnd, cb = m > bEnd;
        if (!ca && aEnd < e)
            e = aEnd;
        if (!cb && bEnd < e)
            e = bEnd;
        double *out = row + (m - rlo);
        size_t len = e - m + 1;
        if (!ca && !cb) {
            const double *pa = A + (m - shift - aLo), *pb = B ? B + (m - bLo) : NULL;
            if (pb != NULL) {
                for (size_t i = 0; i < len; i++) {
                    double v = F + pa[i] + pb[i];
                    out[i] = v < out[i] ? v : out[i];
                }
            } else {
                for (size_t i = 0; i < len; i++) {
                    double v = F + pa[i];
                    out[i] = v < out[i] ? v : out[i];
                }
            }
        } else if (ca && !cb) {
            double av = F + A[aEnd - shift - aLo];
            const double *pb = B ? B + (m - bLo) : NULL;
            for (size_t i = 0; i < len; i++) {
                double v = pb ? av + pb[i] : av;
                out[i] = v < out[i] ? v : out[i];
            }
        } else {
            double bv = B ? B[bEnd - bLo] : 0.0;
            if (!ca) {
                const double *pa = A + (m - shift - aLo);
                for (size_t i = 0; i < len; i++) {
                    double v = B ? F + pa[i] + bv : F + pa[i];
                    out[i] = v < out[i] ? v : out[i];
                }
            } else {
                double v = F + A[aEnd - shift - aLo];
                if (B)
                    v = v + bv;
                for (size_t i = 0; i < len; i++)
                    out[i] = v < out[i] ? v : out[i];
            }
        }
        m = e + 1;
    }
}

static size_t sat_add(size_t a, size_t b, size_t cap)
{
    return a >= cap || b >= cap || a + b >= cap ? cap : a + b;
}

/* Least memory (slots, saturated at W) at which the top-level region [s, s+1) can take
 * an option of E slots: the rest of the chain (row ra, after d(s,s+1) = dk and E) and
 * the region's transient tk, each with E held, and the stage's recomputation (row rb)
 * with EO <= E of them held (the rest are its saved tensors). */
static size_t option_floor(const dp_rows *R, size_t ra, size_t rb, size_t dk, size_t tk,
                           size_t E, size_t EO, size_t W)
{
    size_t m0 = sat_add(sat_add(dk, E, W), R->lo[ra], W);
    size_t lb = sat_add(R->lo[rb], EO, W), te = sat_add(tk, E, W);
    m0 = m0 > lb ? m0 : lb;
    return m0 > te ? m0 : te;
}

tb_status tb_plan_optimal(const tb_allocator *a, const tb_chain *c, int64_t budget,
                          int64_t slots, double *cost, tb_plan_tree *tree)
{
    return tb_plan_optimal_ex(a, NULL, c, budget, slots, cost, tree);
}

/* Per-row bytes of the optimal DP: D, TR, lo, top, off, hi. */
#define TB_DP_ROW_BYTES 48

tb_status tb_plan_optimal_ex(const tb_allocator *a, const tb_stop *stop, const tb_chain *c,
                             int64_t budget, int64_t slots, double *cost, tb_plan_tree *tree)
{
    tb_poll poll = {stop, 0};
    tb_status st = tb_chain_check(c);
    if (st != TB_OK)
        return st;
    if (budget < 0 || slots < 1 || slots > ((int64_t)1 << 24))
        return TB_ERR_INVALID;
    size_t n = c->n;
    int64_t unit = budget / slots + (budget % slots != 0);
    if (unit < 1)
        unit = 1;
    int64_t S = budget / unit;
    int64_t cap = S + 1;
    int64_t X0 = to_slots(c->x[0], unit, cap);
    if (X0 > S)
        return TB_ERR_INFEASIBLE;
    size_t W = (size_t)(S - X0) + 1;
    size_t rows = n * (n + 1) / 2;
    uint64_t meta_bytes = table_bytes(n, TB_DP_ROW_BYTES);
    if (meta_bytes > TB_MAX_PLAN_BYTES)
        return TB_ERR_LIMIT;

    dp_rows R = {NULL, NULL, NULL, NULL};
    size_t *hi = NULL, *G = NULL, *GW = NULL, *nk = NULL, *stk = NULL, *OE = NULL;
    size_t *OEO = NULL;
    int64_t *D = new_bytes_table(a, c, &poll, &st); /* bytes, then slots (clamped to W) */
    int64_t *TR = D == NULL ? NULL : transient_table(a, c, D, &poll, &st); /* likewise */
    if (D == NULL || TR == NULL)
        goto done; /* st says why */
    R.lo = tb_malloc(a, rows * sizeof(size_t));
    R.top = tb_malloc(a, rows * sizeof(size_t));
    R.off = tb_malloc(a, rows * sizeof(size_t));
    hi = tb_malloc(a, rows * sizeof(size_t));
    G = tb_malloc(a, n * sizeof(size_t));
    GW = tb_malloc(a, n * sizeof(size_t));
    nk = next_must_keep(a, c);
    stk = tb_malloc(a, (3 * n + 3) * sizeof(size_t));
    OE = tb_malloc(a, (c->n_opt ? c->n_opt : 1) * sizeof(size_t));
    OEO = tb_malloc(a, (c->n_opt ? c->n_opt : 1) * sizeof(size_t));
    if (R.lo == NULL || R.top == NULL || R.off == NULL || hi == NULL || G == NULL ||
        GW == NULL || nk == NULL || stk == NULL || OE == NULL || OEO == NULL) {
        st = TB_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        int64_t v = to_slots(c->g[i], unit, cap);
        G[i] = (size_t)v > W ? W : (size_t)v;
        /* what stage i's backward needs (g + w: the check's sum stays exact) */
        v = to_slots(c->g[i] + work_bytes(c, i), unit, cap);
        GW[i] = (size_t)v > W ? W : (size_t)v;
    }
    for (size_t o = 0; o < c->n_opt; o++) {
        int64_t v = to_slots(c->opt_bytes[o], unit, cap);
        OE[o] = (size_t)v > W ? W : (size_t)v;
        /* held during the recomputation: E less the overlap rounded down (never less
         * than the exact bytes' slots) */
        size_t ov = c->opt_overlap != NULL ? (size_t)(c->opt_overlap[o] / unit) : 0;
        OEO[o] = ov < OE[o] ? OE[o] - ov : 0;
    }
    for (size_t k = 1; k < n; k++) {
        if (poll_stop(&poll, k)) {
            st = TB_ERR_INTERRUPTED;
            goto done;
        }
        for (size_t s = 0; s < k; s++) {
            int64_t v = to_slots(D[tri(s, k)], unit, cap);
            D[tri(s, k)] = (size_t)v > W ? (int64_t)W : v;
            v = to_slots(TR[tri(s, k)], unit, cap);
            TR[tri(s, k)] = (size_t)v > W ? (int64_t)W : v;
        }
    }

    /* Pass 1: lo (least feasible m, W = none) and hi (constant from there) per row. */
    size_t total = 0;
    for (size_t t = 0; t < n; t++) {
        for (size_t s = t + 1; s-- > 0;) {
            if (poll_stop(&poll, t - s + 1)) {
                st = TB_ERR_INTERRUPTED;
                goto done;
            }
            size_t r = tri(s, t), l, h;
            if (s == t) {
                l = h = G[s];
                if (c->transient && s + 1 < n)
                    l = h = sat_add(G[s], (size_t)D[tri(s, s + 1)], W);
                if (GW[s] > l)
                    l = h = GW[s];
            } else {
                size_t d = G[s] + (size_t)D[tri(s, s + 1)], rk = tri(s + 1, t);
                l = sat_add(d, R.lo[rk], W);
                h = sat_add(d, hi[rk], W);
                l = l > GW[s] ? l : GW[s];
                h = h > GW[s] ? h : GW[s];
                for (size_t k = s + 1; k <= t && k - 1 < nk[s]; k++) {
                    size_t ra = tri(k, t), rb = tri(s, k - 1), dk = (size_t)D[tri(s, k)];
                    size_t la = sat_add(dk, R.lo[ra], W), ha = sat_add(dk, hi[ra], W);
                    size_t lk = la > R.lo[rb] ? la : R.lo[rb];
                    size_t hk = ha > hi[rb] ? ha : hi[rb];
                    size_t tk = (size_t)TR[tri(s, k)];
                    if (tk > lk)
                        lk = tk;
                    if (tk > hk)
                        hk = tk;
                    if (lk < l)
                        l = lk;
                    if (hk > h)
                        h = hk;
                }
                /* top level: region [s, s+1) keeping option o's bytes */
                size_t no = t == n - 1 && s < nk[s] ? n_options(c, s) : 0;
                size_t ra = tri(s + 1, t), rb = tri(s, s), dk = (size_t)D[tri(s, s + 1)];
                size_t tk = (size_t)TR[tri(s, s + 1)];
                for (size_t q = 0; q < no; q++) {
                    size_t oi = (size_t)c->opt_first[s] + q, E = OE[oi];
                    size_t lk = option_floor(&R, ra, rb, dk, tk, E, OEO[oi], W);
                    size_t hk = sat_add(sat_add(dk, E, W), hi[ra], W);
                    size_t hb = sat_add(hi[rb], OEO[oi], W), te = sat_add(tk, E, W);
                    hk = hk > hb ? hk : hb;
                    hk = hk > te ? hk : te;
                    if (lk < l)
                        l = lk;
                    if (hk > h)
                        h = hk;
                }
            }
            R.lo[r] = l;
            hi[r] = h;
            R.top[r] = h < W - 1 ? h : W - 1;
            R.off[r] = total;
            if (l < W) {
                size_t w = R.top[r] - l + 1;
                if (total > SIZE_MAX / sizeof(double) - w) {
                    st = TB_ERR_OVERFLOW;
                    goto done;
                }
                total += w;
            }
        }
    }
    if (total > (TB_MAX_PLAN_BYTES - meta_bytes) / sizeof(double)) {
        st = TB_ERR_LIMIT; /* too many cells: fewer slots or stages */
        goto done;
    }
    R.T = tb_malloc(a, (total ? total : 1) * sizeof(double));
    if (R.T == NULL) {
        st = TB_ERR_NOMEM;
        goto done;
    }

    /* Pass 2: the costs on the stored ranges. */
    for (size_t t = 0; t < n; t++) {
        for (size_t s = t + 1; s-- > 0;) {
            size_t r = tri(s, t);
            if (poll_stop(&poll, t - s + 1)) {
                st = TB_ERR_INTERRUPTED;
                goto done;
            }
            if (R.lo[r] >= W)
                continue;
            double *row = R.T + R.off[r];
            size_t rlo = R.lo[r], rtop = R.top[r];
            double fb = c->f[s] + c->b[s];
            if (s == t) {
                for (size_t m = rlo; m <= rtop; m++)
                    row[m - rlo] = fb;
                continue;
            }
            for (size_t m = rlo; m <= rtop; m++)
                row[m - rlo] = TB_INF;
            /* keep s */
            size_t d = G[s] + (size_t)D[tri(s, s + 1)], rk = tri(s + 1, t);
            size_t mk0 = R.lo[rk] < W ? d + R.lo[rk] : SIZE_MAX;
            if (mk0 != SIZE_MAX && GW[s] > mk0)
                mk0 = GW[s];
            if (mk0 <= rtop) {
                dp_relax(&R, row, rlo, mk0, rtop, fb, rk, d, SIZE_MAX);
                if (poll_stop(&poll, rtop - rlo + 1)) {
                    st = TB_ERR_INTERRUPTED;
                    goto done;
                }
            }
            /* region [s, k): no must_keep stage inside */
            double F = 0.0;
            for (size_t k = s + 1; k <= t && k - 1 < nk[s]; k++) {
                F += c->f[k - 1];
                size_t ra = tri(k, t), rb = tri(s, k - 1), dk = (size_t)D[tri(s, k)];
                if (R.lo[ra] >= W || R.lo[rb] >= W)
                    continue;
                size_t m0 = dk + R.lo[ra];
                if (R.lo[rb] > m0)
                    m0 = R.lo[rb];
                if ((size_t)TR[tri(s, k)] > m0)
                    m0 = (size_t)TR[tri(s, k)];
                if (m0 > rtop)
                    continue;
                dp_relax(&R, row, rlo, m0, rtop, F, ra, dk, rb);
                if (poll_stop(&poll, rtop - m0 + 1)) {
                    st = TB_ERR_INTERRUPTED;
                    goto done;
                }
            }
            /* top level: region [s, s+1) keeping option o's bytes */
            size_t no = t == n - 1 && s < nk[s] ? n_options(c, s) : 0;
            size_t ra = tri(s + 1, t), rb = tri(s, s), dk = (size_t)D[tri(s, s + 1)];
            for (size_t q = 0; q < no && R.lo[ra] < W && R.lo[rb] < W; q++) {
                size_t oi = (size_t)c->opt_first[s] + q, E = OE[oi], shift = dk + E;
                size_t m0 = option_floor(&R, ra, rb, dk, (size_t)TR[tri(s, s + 1)], E,
                                         OEO[oi], W);
                if (m0 > rtop)
                    continue;
                double Fo = c->f[s] + (c->f[s] - c->opt_save[oi] + c->b[s]);
                dp_relax(&R, row, rlo, m0, rtop, Fo, ra, shift, SIZE_MAX);
                if (poll_stop(&poll, rtop - m0 + 1)) {
                    st = TB_ERR_INTERRUPTED;
                    goto done;
                }
            }
        }
    }

    double best = dp_get(&R, tri(0, n - 1), W - 1);
    if (best == TB_INF) {
        st = TB_ERR_INFEASIBLE;
        goto done;
    }
    *cost = best;
    if (tree != NULL) {
        /* Traceback: re-evaluate the choices at each state, take the cheapest (ties:
         * keep, then the smallest k). Stack of pending (s, t, m) sequences. */
        size_t sp = 0;
        stk[sp++] = 0;
        stk[sp++] = n - 1;
        stk[sp++] = W - 1;
        while (sp > 0) {
            size_t m = stk[--sp], t = stk[--sp], s = stk[--sp];
            for (;;) {
                if (s == t) {
                    st = tree_push(a, tree, TB_NODE_KEEP, s, s + 1);
                    if (st != TB_OK)
                        goto done;
                    break;
                }
                double bv = TB_INF;
                size_t bk = 0;
                size_t d = G[s] + (size_t)D[tri(s, s + 1)];
                if (m >= d && m >= GW[s])
                    bv = c->f[s] + c->b[s] + dp_get(&R, tri(s + 1, t), m - d);
                double F = 0.0;
                for (size_t k = s + 1; k <= t && k - 1 < nk[s]; k++) {
                    F += c->f[k - 1];
                    size_t dk = (size_t)D[tri(s, k)];
                    if (m < dk || m < (size_t)TR[tri(s, k)])
                        continue;
                    double v = F + dp_get(&R, tri(k, t), m - dk) + dp_get(&R, tri(s, k - 1), m);
                    if (v < bv) {
                        bv = v;
                        bk = k;
                    }
                }
                size_t no = t == n - 1 && s < nk[s] ? n_options(c, s) : 0, bq = SIZE_MAX;
                for (size_t q = 0; q < no; q++) {
                    size_t oi = (size_t)c->opt_first[s] + q, E = OE[oi];
                    size_t dk = (size_t)D[tri(s, s + 1)];
                    if (m < option_floor(&R, tri(s + 1, t), tri(s, s), dk,
                                         (size_t)TR[tri(s, s + 1)], E, OEO[oi], W))
                        continue;
                    double v = c->f[s] + (c->f[s] - c->opt_save[oi] + c->b[s]) +
                               dp_get(&R, tri(s + 1, t), m - dk - E);
                    if (v < bv) {
                        bv = v;
                        bq = q;
                    }
                }
                if (bq != SIZE_MAX) {
                    size_t E = OE[(size_t)c->opt_first[s] + bq];
                    st = tree_push_opt(a, tree, TB_NODE_REGION, s, s + 1, (int32_t)bq);
                    if (st != TB_OK)
                        goto done;
                    stk[sp++] = s + 1;
                    stk[sp++] = t;
                    stk[sp++] = m - (size_t)D[tri(s, s + 1)] - E;
                    t = s;
                    m -= E;
                    continue;
                }
                if (bv == TB_INF) {
                    st = TB_ERR_STATE; /* cannot happen: the state was feasible */
                    goto done;
                }
                if (bk == 0) {
                    st = tree_push(a, tree, TB_NODE_KEEP, s, s + 1);
                    if (st != TB_OK)
                        goto done;
                    m -= d;
                    s++;
                    continue;
                }
                st = tree_push(a, tree, TB_NODE_REGION, s, bk);
                if (st != TB_OK)
                    goto done;
                stk[sp++] = bk;
                stk[sp++] = t;
                stk[sp++] = m - (size_t)D[tri(s, bk)];
                t = bk - 1;
            }
        }
    }
    st = TB_OK;
done:
    tb_free(a, R.T);
    tb_free(a, R.lo);
    tb_free(a, R.top);
    tb_free(a, R.off);
    tb_free(a, hi);
    tb_free(a, D);
    tb_free(a, TR);
    tb_free(a, G);
    tb_free(a, GW);
    tb_free(a, nk);
    tb_free(a, stk);
    tb_free(a, OE);
    tb_free(a, OEO);
    return st;
}

/* ---------------------------------------------------------------- baselines */

/* [s, e) holds a must_keep stage or a cut boundary (s < b < e): not a region. */
static int has_must_keep(const tb_chain *c, size_t s, size_t e)
{
    for (size_t i = s; i < e; i++)
        if (is_must_keep(c, i) || (i > s && is_cut(c, i)))
            return 1;
    return 0;
}

static tb_status emit_keeps(const tb_allocator *a, tb_plan_tree *tree, size_t s, size_t e)
{
    for (size_t i = s; i < e; i++) {
        tb_status st = tree_push(a, tree, TB_NODE_KEEP, i, i + 1);
        if (st != TB_OK)
            return st;
    }
    return TB_OK;
}

/* One segment [s, e) as recompute regions of its maximal runs without must_keep
 * stages (those are kept) and without cut boundaries inside. */
static tb_status emit_segment(const tb_allocator *a, const tb_chain *c, tb_plan_tree *tree,
                              size_t s, size_t e)
{
    size_t i = s;
    while (i < e) {
        tb_status st;
        if (is_must_keep(c, i)) {
            st = tree_push(a, tree, TB_NODE_KEEP, i, i + 1);
            if (st != TB_OK)
                return st;
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < e && !is_must_keep(c, j) && !is_cut(c, j))
            j++;
        st = tree_push(a, tree, TB_NODE_REGION, i, j);
        if (st == TB_OK)
            st = emit_keeps(a, tree, i, j);
        if (st != TB_OK)
            return st;
        i = j;
    }
    return TB_OK;
}

/* Balanced interval tree: Region over the first half (nested to height h-1), then the
 * second half at this level with height h-1. Recursion depth <= log2(n) + 1. */
static tb_status emit_tree(const tb_allocator *a, const tb_chain *c, tb_plan_tree *tree,
                           size_t s, size_t e, int h)
{
    while (h > 0 && e - s > 1) {
        size_t mid = s + (e - s) / 2;
        if (!has_must_keep(c, s, mid)) {
            tb_status st = tree_push(a, tree, TB_NODE_REGION, s, mid);
            if (st != TB_OK)
                return st;
        }
        tb_status st = emit_tree(a, c, tree, s, mid, h - 1);
        if (st != TB_OK)
            return st;
        s = mid;
        h--;
    }
    return emit_keeps(a, tree, s, e);
}

tb_status tb_plan_baseline(const tb_allocator *a, const tb_chain *c, tb_planner_kind kind,
                           int height, tb_plan_tree *tree)
{
    tb_status st = tb_chain_check(c);
    if (st != TB_OK)
        return st;
    size_t n = c->n;
    switch (kind) {
    case TB_PLANNER_STORE_ALL:
        return emit_keeps(a, tree, 0, n);
    case TB_PLANNER_PER_STAGE:
        for (size_t i = 0; i < n; i++) {
            st = emit_segment(a, c, tree, i, i + 1);
            if (st != TB_OK)
                return st;
        }
        return TB_OK;
    case TB_PLANNER_SQRT: {
        size_t k = (size_t)llround(sqrt((double)n));
        if (k < 1)
            k = 1;
        double total = 0.0;
        for (size_t i = 0; i < n; i++)
            total += c->f[i];
        size_t s = 0, e = 0;
        double cum = 0.0;
        for (size_t j = 1; j < k && s < n; j++) {
            /* end of segment j: first e with cum(e) >= j/k of the total (or j*n/k
             * stages when all costs are zero); at least one stage per segment */
            e = s;
            if (total > 0) {
                double target = total * (double)j / (double)k;
                while (e < n && (e == s || cum < target)) {
                    cum += c->f[e];
                    e++;
                }
            } else {
                e = j * n / k;
                if (e <= s)
                    e = s + 1;
            }
            if (e >= n)
                break;
            st = emit_segment(a, c, tree, s, e);
            if (st != TB_OK)
                return st;
            s = e;
        }
        return emit_keeps(a, tree, s, n); /* last segment: kept */
    }
    case TB_PLANNER_TREE:
        if (height < 0)
            return TB_ERR_INVALID;
        return emit_tree(a, c, tree, 0, n, height);
    default:
        return TB_ERR_INVALID;
    }
}
