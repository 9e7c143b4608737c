/* tiny-backprop C core: checkpoint planners and the plan simulator.
 * Pure C11; never includes Python.h.
 *
 * Model (see DESIGN.md, docs/theory.md). Stages 0..L-1; stage i has forward cost f[i],
 * backward cost b[i], input bytes x[i] (its boundary input) and saved bytes g[i].
 * Everything held counts against the budget: stored boundaries (x[0] included) and
 * saved tensors. d(s,k) (s < k) = bytes of the boundary x[k] that are new since x[s]:
 * the values produced in stages s..k-1 that are live at boundary k. Without live
 * intervals (a plain chain, x[k] made by stage k-1) d(s,k) = x[k]; with them
 * d(s,k) = sum of bytes over intervals (j, u, bytes) with s <= j < k <= u.
 * opt(s,t,m) = least cost to finish forward+backward of s..t when x[s] is held and
 * m more bytes are free:
 *   s == t:        f[s] + b[s]                       if g[s] <= m
 *   keep s:        f[s] + b[s] + opt(s+1, t, m - g[s] - d(s,s+1))
 *   region [s,k):  f[s]+..+f[k-1] + opt(k, t, m - d(s,k)) + opt(s, k-1, m)   (s < k <= t)
 * Plan cost = opt(0, L-1, M - x[0]).
 *
 * Optional transient term (chain.transient != 0): while a region [s,k) runs its
 * forward without saving, stage j's input and output boundaries are both live, so the
 * region also needs m >= tr(s,k) = max over s <= j < k of d(s,j) + d(j,j+1) (d(s,s)=0);
 * and a last stage s == t < L-1 (only inside a recomputation) re-creates its output as
 * a new copy while the original is still held, so it needs g[s] + d(s,s+1) <= m.
 * With transient == 0 the model is exactly the recurrence above.
 *
 * Plan trees are encoded flat, in preorder: node j has kind[j] (TB_NODE_KEEP or
 * TB_NODE_REGION), start[j] and end[j] (a Keep of stage i has start i, end i+1).
 * A Region's children follow it directly and cover start..end-1 exactly, in order;
 * the top-level nodes cover 0..L-1.
 *
 * Options (the two-level planner's level 1, chain.n_opt > 0): stage s may have options
 * o, each (e = opt_bytes, r = opt_save): when s is a region of its own at the top level
 * ([s, s+1) with t = L-1, s < L-1), the region may keep e bytes of s's op outputs from
 * its forward until its backward, and its recomputation then costs f[s] - r. Exactly:
 *   region [s,s+1) with option o:  f[s] + opt(s+1, L-1, m - d(s,s+1) - e)
 *                                  + (f[s] - r + b[s])   if m - e >= tr(s,s+1) and
 *                                                   m - e + v >= g[s] + d(s,s+1)
 * (the kept bytes count as held through the rest of the chain; during the stage's
 * recomputation the v bytes of them that become its saved tensors (opt_overlap) are
 * already in g[s]).
 * Only the top level has options: inside a recomputation every region is plain, so
 * rows opt(s, t, m) with t < L-1 are the plain model's. The tree node of such a region
 * carries o (tree.opt); the simulator adds e to the bytes held from the region's start
 * and takes v off them inside the region's recomputation.
 *
 * Working bytes (chain.w != NULL): stage s's backward also needs w[s] bytes beyond g[s]
 * (the gradients in flight while it runs). Wherever it runs with m bytes free (x[s] and
 * all before it held) the model requires g[s] + w[s] <= m: in the s == t case (with the
 * transient term: g[s] + max(d(s,s+1), w[s]) <= m, the option's condition likewise) and
 * in "keep s" (its backward runs after s+1..t have finished). The simulator's peak
 * includes the bytes held at each stage's backward plus w[s]. With w == NULL (or all
 * zero) the model is exactly the one above.
 *
 * Cuts (chain.cut != NULL): a region [s, k) is a choice only if no boundary s < b < k
 * has cut[b] (for an input the runtime holds however the region runs: one made by
 * code between the blocks, which a region's recomputation cannot re-make).
 */
#ifndef TB_PLANNER_H
#define TB_PLANNER_H

#include <stddef.h>
#include <stdint.h>

#include "tb_common.h"

enum { TB_NODE_KEEP = 0, TB_NODE_REGION = 1 };

typedef enum tb_planner_kind {
    TB_PLANNER_OPTIMAL = 0,
    TB_PLANNER_STORE_ALL = 1,
    TB_PLANNER_PER_STAGE = 2,
    TB_PLANNER_SQRT = 3,
    TB_PLANNER_TREE = 4
} tb_planner_kind;

/* A chain of stages. Arrays of length n (borrowed). must_keep may be NULL.
 * live (borrowed, may be NULL when n_live == 0) holds n_live triples (j, u, bytes):
 * a value produced in stage j, last used by stage u (0 <= j < u <= n-1; u = n-1 also
 * for values that live to the end), of `bytes` >= 0. With n_live > 0 the boundaries
 * x[1..n-1] are not read (d comes from the intervals); x[0] always is. */
typedef struct tb_chain {
    size_t n;
    const double *f;          /* forward cost, >= 0, finite */
    const double *b;          /* backward cost, >= 0, finite */
    const int64_t *x;         /* input bytes, >= 0 */
    const int64_t *g;         /* saved bytes, >= 0 */
    const uint8_t *must_keep; /* nonzero: stage may not be inside any region */
    size_t n_live;            /* number of live intervals (0: plain chain) */
    const int64_t *live;      /* 3 * n_live entries: j, u, bytes */
    int transient;            /* nonzero: regions also need m >= tr(s,k) (see above) */
    /* Options of single-stage top-level regions (n_opt == 0: none; see "Options" above).
     * opt_first has n + 1 entries (0 = opt_first[0] <= ... <= opt_first[n] = n_opt);
     * stage s's options are opt_first[s] .. opt_first[s+1]-1, numbered 0.. within s. */
    size_t n_opt;
    const int32_t *opt_first;
    const int64_t *opt_bytes; /* n_opt entries, in [0, TB_MAX_BYTES] */
    const double *opt_save;   /* n_opt entries, finite, 0 <= opt_save <= f[s] */
    /* n_opt entries or NULL (all 0): of opt_bytes, the bytes that are also part of g[s]
     * (kept outputs the recomputation's saved tensors then are): 0 <= v <= opt_bytes */
    const int64_t *opt_overlap;
    /* n entries or NULL (all 0): working bytes w[s], the most bytes stage s's backward
     * needs beyond its saved tensors (gradients in flight; see "Working bytes" above) */
    const int64_t *w;
    /* n entries or NULL (none): cut[k] != 0 (1 <= k <= n-1) = no region contains both
     * stage k-1 and stage k (boundary k is always a region edge; cut[0] is ignored) */
    const uint8_t *cut;
} tb_chain;

/* A flat preorder plan tree (owned: free with tb_plan_tree_free). opt[j] is the
 * option of node j (-1: none); opt may be NULL (no node has one). */
typedef struct tb_plan_tree {
    size_t n_nodes;
    size_t cap;
    uint8_t *kind;
    int32_t *start;
    int32_t *end;
    int32_t *opt;
} tb_plan_tree;

void tb_plan_tree_free(const tb_allocator *a, tb_plan_tree *tree);

/* Largest number of stages accepted by the planners (sizes are int32 indices). */
#define TB_MAX_STAGES 100000
/* Largest number of live intervals accepted. */
#define TB_MAX_LIVE 100000000
/* Largest number of options accepted. */
#define TB_MAX_OPTIONS 10000000
/* d(s, k) of the model (0 <= s < k <= n-1), in bytes. O(n_live) with intervals. */
int64_t tb_chain_new_bytes(const tb_chain *c, size_t s, size_t k);

/* tr(s, k) of the model (0 <= s < k <= n-1), in bytes: the most held at once by
 * the values new since x[s] while region [s,k) runs its forward. */
int64_t tb_chain_transient_bytes(const tb_chain *c, size_t s, size_t k);

/* Largest byte count accepted (sums of all sizes must stay exact in int64/double). */
#define TB_MAX_BYTES ((int64_t)1 << 52)

/* Largest sum of all costs (forward and backward) of an n-stage chain:
 * DBL_MAX / 4 / (n + 1). Any schedule runs each forward at most n + 1 times, so with
 * this bound every cost the planners add up (totals and DP values) stays finite and a
 * feasible budget is never reported infeasible because a sum overflowed to inf. */
double tb_max_cost_sum(size_t n);

/* Validates a chain: n >= 1, options as documented in tb_chain (TB_ERR_INVALID;
 * option bytes count in the byte total), costs finite >= 0 with a sum <= tb_max_cost_sum(n)
 * (TB_ERR_OVERFLOW otherwise), sizes in [0, TB_MAX_BYTES], and the sum of all sizes
 * (interval and working bytes included) <= TB_MAX_BYTES; intervals with 0 <= j < u <= n-1
 * (TB_ERR_RANGE otherwise), at most TB_MAX_LIVE of them.
 * TB_OK or TB_ERR_INVALID / TB_ERR_RANGE / TB_ERR_OVERFLOW. */
tb_status tb_chain_check(const tb_chain *c);

/* Most bytes of tables that tb_plan_optimal / tb_min_budget allocate (O(n^2) per-row
 * data, plus the DP's cells: up to n^2/2 * min(slots, budget) doubles). A problem that
 * would need more returns TB_ERR_LIMIT before allocating it (4 GiB). */
#define TB_MAX_PLAN_BYTES ((uint64_t)1 << 32)

/* Replays a plan tree forward and backward under the model.
 * *cost = total compute cost (forward, recompute and backward), *peak = largest number
 * of bytes held at once (x[0] included). TB_ERR_INVALID for a malformed tree or one
 * that puts a must_keep stage inside a region. */
tb_status tb_simulate(const tb_allocator *a, const tb_chain *c, const tb_plan_tree *tree,
                      double *cost, int64_t *peak);
/* Same, polling stop (may be NULL) as it goes: TB_ERR_INTERRUPTED when it says stop. */
tb_status tb_simulate_ex(const tb_allocator *a, const tb_stop *stop, const tb_chain *c,
                         const tb_plan_tree *tree, double *cost, int64_t *peak);

/* Smallest budget (exact bytes) for which the model has a schedule, and the least cost
 * among the schedules that reach it. If tree is not NULL it receives such a schedule. */
tb_status tb_min_budget(const tb_allocator *a, const tb_chain *c, int64_t *min_bytes,
                        double *cost, tb_plan_tree *tree);
/* Same, polling stop (may be NULL): TB_ERR_INTERRUPTED when it says stop; TB_ERR_LIMIT
 * when the tables would exceed TB_MAX_PLAN_BYTES. */
tb_status tb_min_budget_ex(const tb_allocator *a, const tb_stop *stop, const tb_chain *c,
                           int64_t *min_bytes, double *cost, tb_plan_tree *tree);

/* Optimal plan for `budget` bytes with memory discretised into at most `slots` units:
 * unit = max(1, ceil(budget / slots)), sizes rounded up, budget rounded down, so the
 * plan never exceeds the budget; exact when sizes are integers and budget <= slots.
 * *cost receives the DP's value. TB_ERR_INFEASIBLE when the discretised DP finds no
 * schedule (the caller may then fall back to tb_min_budget's schedule). */
tb_status tb_plan_optimal(const tb_allocator *a, const tb_chain *c, int64_t budget,
                          int64_t slots, double *cost, tb_plan_tree *tree);
/* Same, polling stop (may be NULL): TB_ERR_INTERRUPTED when it says stop; TB_ERR_LIMIT
 * when the tables would exceed TB_MAX_PLAN_BYTES. */
tb_status tb_plan_optimal_ex(const tb_allocator *a, const tb_stop *stop, const tb_chain *c,
                             int64_t budget, int64_t slots, double *cost, tb_plan_tree *tree);

/* A baseline plan (budget-blind): store_all, per_stage, sqrt or tree (height >= 0).
 * must_keep stages are never put inside a region. */
tb_status tb_plan_baseline(const tb_allocator *a, const tb_chain *c, tb_planner_kind kind,
                           int height, tb_plan_tree *tree);

#endif /* TB_PLANNER_H */
