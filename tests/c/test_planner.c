/* C unit tests of the planners and the simulator: known answers, infeasible budgets,
 * malformed trees, and an allocation-failure loop under the counting allocator. */
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "planner.h"

static int failures = 0;
#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); failures++; } } while (0)

static const double F4[] = {1, 1, 1, 1}, B4[] = {2, 2, 2, 2};
static const int64_t X4[] = {10, 10, 10, 10}, G4[] = {10, 10, 10, 10};

static tb_chain chain4(const uint8_t *mk)
{
    return (tb_chain){4, F4, B4, X4, G4, mk, 0, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL};
}

static void test_known_answers(void)
{
    tb_chain c = chain4(NULL);
    tb_plan_tree tree = {0};
    double cost = 0, scost = 0;
    int64_t peak = 0;
    /* store-all fits: 10 + 3 * (10 + 10) + 10 = 80 bytes, cost 12 */
    CHECK(tb_plan_optimal(NULL, &c, 80, 512, &cost, &tree) == TB_OK);
    CHECK(cost == 12.0);
    CHECK(tree.n_nodes == 4);
    CHECK(tb_simulate(NULL, &c, &tree, &scost, &peak) == TB_OK);
    CHECK(scost == 12.0 && peak == 80);
    tb_plan_tree_free(NULL, &tree);

    /* 40 bytes: best is 15 (recompute 3 forward units) */
    CHECK(tb_plan_optimal(NULL, &c, 40, 512, &cost, &tree) == TB_OK);
    CHECK(cost == 15.0);
    CHECK(tb_simulate(NULL, &c, &tree, &scost, &peak) == TB_OK);
    CHECK(scost == cost && peak <= 40);
    tb_plan_tree_free(NULL, &tree);

    /* minimum budget: x0 + region [0,3) holding x3 + g3 = 30 */
    int64_t mb = 0;
    CHECK(tb_min_budget(NULL, &c, &mb, &cost, &tree) == TB_OK);
    CHECK(mb == 30);
    CHECK(tb_simulate(NULL, &c, &tree, &scost, &peak) == TB_OK);
    CHECK(peak == 30 && scost == cost);
    tb_plan_tree_free(NULL, &tree);
    CHECK(tb_plan_optimal(NULL, &c, 29, 512, &cost, &tree) == TB_ERR_INFEASIBLE);
    CHECK(tree.n_nodes == 0);
    CHECK(tb_plan_optimal(NULL, &c, 30, 512, &cost, &tree) == TB_OK);
    tb_plan_tree_free(NULL, &tree);
    CHECK(tb_plan_optimal(NULL, &c, 5, 512, &cost, &tree) == TB_ERR_INFEASIBLE);

    /* must_keep everywhere: only store-all is allowed */
    uint8_t all[4] = {1, 1, 1, 1};
    tb_chain ck = chain4(all);
    CHECK(tb_plan_optimal(NULL, &ck, 79, 512, &cost, &tree) == TB_ERR_INFEASIBLE);
    CHECK(tb_min_budget(NULL, &ck, &mb, &cost, NULL) == TB_OK && mb == 80);

    /* coarse slots still never exceed the budget */
    CHECK(tb_plan_optimal(NULL, &c, 57, 4, &cost, &tree) == TB_OK);
    CHECK(tb_simulate(NULL, &c, &tree, &scost, &peak) == TB_OK);
    CHECK(peak <= 57);
    tb_plan_tree_free(NULL, &tree);
}

static void test_baselines(void)
{
    tb_chain c = chain4(NULL);
    tb_plan_tree tree = {0};
    double cost = 0;
    int64_t peak = 0;
    CHECK(tb_plan_baseline(NULL, &c, TB_PLANNER_STORE_ALL, 0, &tree) == TB_OK);
    CHECK(tb_simulate(NULL, &c, &tree, &cost, &peak) == TB_OK && cost == 12 && peak == 80);
    tb_plan_tree_free(NULL, &tree);
    CHECK(tb_plan_baseline(NULL, &c, TB_PLANNER_PER_STAGE, 0, &tree) == TB_OK);
    CHECK(tree.n_nodes == 8);
    CHECK(tb_simulate(NULL, &c, &tree, &cost, &peak) == TB_OK && cost == 16 && peak == 50);
    tb_plan_tree_free(NULL, &tree);
    CHECK(tb_plan_baseline(NULL, &c, TB_PLANNER_SQRT, 0, &tree) == TB_OK);
    CHECK(tb_simulate(NULL, &c, &tree, &cost, &peak) == TB_OK && cost == 14 && peak == 50);
    tb_plan_tree_free(NULL, &tree);
    CHECK(tb_plan_baseline(NULL, &c, TB_PLANNER_TREE, 2, &tree) == TB_OK);
    CHECK(tb_simulate(NULL, &c, &tree, &cost, &peak) == TB_OK && cost == 16 && peak == 40);
    tb_plan_tree_free(NULL, &tree);
    CHECK(tb_plan_baseline(NULL, &c, TB_PLANNER_TREE, -1, &tree) == TB_ERR_INVALID);
    CHECK(tb_plan_baseline(NULL, &c, (tb_planner_kind)99, 0, &tree) == TB_ERR_INVALID);
    uint8_t mk[4] = {0, 1, 0, 0};
    tb_chain ck = chain4(mk);
    CHECK(tb_plan_baseline(NULL, &ck, TB_PLANNER_PER_STAGE, 0, &tree) == TB_OK);
    CHECK(tb_simulate(NULL, &ck, &tree, &cost, &peak) == TB_OK); /* no region holds stage 1 */
    tb_plan_tree_free(NULL, &tree);
}

static void test_invalid(void)
{
    tb_chain c = chain4(NULL);
    double cost;
    int64_t peak;
    uint8_t kind[2] = {TB_NODE_KEEP, TB_NODE_KEEP};
    int32_t st[2] = {0, 2}, en[2] = {1, 3};
    tb_plan_tree bad = {2, 2, kind, st, en, NULL}; /* skips stage 1 */
    CHECK(tb_simulate(NULL, &c, &bad, &cost, &peak) == TB_ERR_INVALID);
    uint8_t k2[2] = {TB_NODE_REGION, TB_NODE_REGION};
    int32_t s2[2] = {0, 0}, e2[2] = {4, 4};
    tb_plan_tree self = {2, 2, k2, s2, e2, NULL}; /* region nested in itself, never closed */
    CHECK(tb_simulate(NULL, &c, &self, &cost, &peak) == TB_ERR_INVALID);
    double nan_f[4] = {1, 1, NAN, 1};
    tb_chain cn = {4, nan_f, B4, X4, G4, NULL, 0, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL};
    CHECK(tb_chain_check(&cn) == TB_ERR_INVALID);
    int64_t neg[4] = {1, -1, 1, 1};
    tb_chain cneg = {4, F4, B4, neg, G4, NULL, 0, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL};
    CHECK(tb_chain_check(&cneg) == TB_ERR_INVALID);
    tb_chain empty = {0, F4, B4, X4, G4, NULL, 0, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL};
    CHECK(tb_chain_check(&empty) == TB_ERR_INVALID);
    tb_plan_tree tree = {0};
    CHECK(tb_plan_optimal(NULL, &c, 100, 0, &cost, &tree) == TB_ERR_INVALID);
    CHECK(tb_plan_optimal(NULL, &c, -1, 10, &cost, &tree) == TB_ERR_INVALID);
}

/* Fail the k-th allocation for every k: a clean TB_ERR_NOMEM and no leak. */
static void test_alloc_failures(void)
{
    double f[7] = {1, 2, 3, 1, 2, 3, 1}, b[7] = {2, 4, 6, 2, 4, 6, 2};
    int64_t x[7] = {5, 9, 3, 8, 2, 7, 4}, g[7] = {6, 2, 9, 4, 7, 3, 5};
    int64_t live[9] = {0, 3, 4, 1, 2, 6, 2, 6, 1};
    tb_chain plain = {7, f, b, x, g, NULL, 0, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL};
    tb_chain dag = {7, f, b, x, g, NULL, 3, live, 1, 0, NULL, NULL, NULL, NULL, NULL, NULL};
    for (int which = 0; which < 12; which++) {
        tb_chain c = which < 6 ? plain : dag;
        int ok = 0;
        for (size_t k = 1; k < 200 && !ok; k++) {
            tb_counting_state cs = {0, 0, 0, k};
            tb_allocator a = tb_counting_allocator(&cs);
            tb_plan_tree tree = {0};
            double cost;
            int64_t v;
            tb_status st;
            if (which % 6 == 0)
                st = tb_plan_optimal(&a, &c, 30, 16, &cost, &tree);
            else if (which % 6 == 1)
                st = tb_min_budget(&a, &c, &v, &cost, &tree);
            else
                st = tb_plan_baseline(&a, &c, (tb_planner_kind)(which % 6 - 1), 3, &tree);
            if (st == TB_OK) {
                CHECK(tb_simulate(&a, &c, &tree, &cost, &v) == TB_OK ||
                      cs.n_alloc >= k); /* the simulator's own allocation may be the one */
                ok = cs.n_alloc < k;
            } else {
                CHECK(st == TB_ERR_NOMEM);
                CHECK(tree.n_nodes == 0 || tree.kind != NULL);
            }
            tb_plan_tree_free(&a, &tree);
            CHECK(cs.live == 0);
        }
        CHECK(ok);
    }
}

/* Live intervals: a plain chain written as intervals plans identically; bad intervals
 * are rejected; the DP's answer is what the simulator replays. */
static void test_live_intervals(void)
{
    double f[5] = {1, 2, 3, 1, 2}, b[5] = {2, 4, 6, 2, 4};
    int64_t x[5] = {5, 9, 3, 8, 2}, g[5] = {6, 2, 9, 4, 7};
    int64_t as_iv[12] = {0, 1, 9, 1, 2, 3, 2, 3, 8, 3, 4, 2};
    tb_chain plain = {5, f, b, x, g, NULL, 0, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL};
    tb_chain same = {5, f, b, x, g, NULL, 4, as_iv, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL};
    for (int64_t budget = 0; budget < 60; budget++) {
        tb_plan_tree t1 = {0}, t2 = {0};
        double c1 = -1, c2 = -1;
        tb_status s1 = tb_plan_optimal(NULL, &plain, budget, 512, &c1, &t1);
        tb_status s2 = tb_plan_optimal(NULL, &same, budget, 512, &c2, &t2);
        CHECK(s1 == s2 && c1 == c2 && t1.n_nodes == t2.n_nodes);
        tb_plan_tree_free(NULL, &t1);
        tb_plan_tree_free(NULL, &t2);
    }
    /* a skip from stage 0 to 4 is charged once, not at every boundary */
    int64_t skip[15] = {0, 4, 10, 0, 1, 1, 1, 2, 1, 2, 3, 1, 3, 4, 1};
    tb_chain dag = {5, f, b, x, g, NULL, 5, skip, 1, 0, NULL, NULL, NULL, NULL, NULL, NULL};
    CHECK(tb_chain_new_bytes(&dag, 0, 3) == 11 && tb_chain_new_bytes(&dag, 1, 3) == 1);
    tb_plan_tree tree = {0};
    double cost = 0, sc = 0;
    int64_t peak = 0, mb = 0;
    CHECK(tb_plan_baseline(NULL, &dag, TB_PLANNER_STORE_ALL, 0, &tree) == TB_OK);
    CHECK(tb_simulate(NULL, &dag, &tree, &cost, &peak) == TB_OK);
    CHECK(peak == 5 + 6 + 11 + 2 + 1 + 9 + 1 + 4 + 1 + 7);
    tb_plan_tree_free(NULL, &tree);
    CHECK(tb_min_budget(NULL, &dag, &mb, &cost, &tree) == TB_OK);
    CHECK(tb_simulate(NULL, &dag, &tree, &sc, &peak) == TB_OK && peak == mb && sc == cost);
    tb_plan_tree_free(NULL, &tree);
    CHECK(tb_plan_optimal(NULL, &dag, 40, 40, &cost, &tree) == TB_OK);
    CHECK(tb_simulate(NULL, &dag, &tree, &sc, &peak) == TB_OK && peak <= 40 && sc == cost);
    tb_plan_tree_free(NULL, &tree);
    int64_t bad1[3] = {2, 2, 1}, bad2[3] = {0, 5, 1}, bad3[3] = {0, 1, -1};
    tb_chain cb = {5, f, b, x, g, NULL, 1, bad1, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL};
    CHECK(tb_chain_check(&cb) == TB_ERR_RANGE);
    cb.live = bad2;
    CHECK(tb_chain_check(&cb) == TB_ERR_RANGE);
    cb.live = bad3;
    CHECK(tb_chain_check(&cb) == TB_ERR_INVALID);
    cb.live = NULL;
    CHECK(tb_chain_check(&cb) == TB_ERR_INVALID);
}

/* The transient term: a region must fit its running boundaries. Chain of 3 stages,
 * x = {1, 4, 4}, g = 0: without the term, region [0, 2) (holding x[2] = 4 after running
 * stage 0 and 1) fits in budget 1 + 4; with it, running stage 1 inside the region holds
 * x[1] + x[2] = 8 at once, so the plan needs more memory or another shape. */
static void test_transient(void)
{
    double f[3] = {1, 1, 1}, b[3] = {1, 1, 1};
    int64_t x[3] = {1, 4, 4}, g[3] = {0, 0, 0};
    tb_chain off = {3, f, b, x, g, NULL, 0, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL};
    tb_chain on = {3, f, b, x, g, NULL, 0, NULL, 1, 0, NULL, NULL, NULL, NULL, NULL, NULL};
    CHECK(tb_chain_transient_bytes(&on, 0, 2) == 8);
    CHECK(tb_chain_transient_bytes(&on, 0, 1) == 4);
    int64_t mb_off = 0, mb_on = 0;
    double cost = 0.0;
    CHECK(tb_min_budget(NULL, &off, &mb_off, &cost, NULL) == TB_OK);
    CHECK(tb_min_budget(NULL, &on, &mb_on, &cost, NULL) == TB_OK);
    CHECK(mb_on > mb_off);
    for (int64_t budget = mb_on; budget < mb_on + 12; budget++) {
        tb_plan_tree tree = {0};
        double planned = 0.0, simulated = 0.0;
        int64_t peak = 0;
        CHECK(tb_plan_optimal(NULL, &on, budget, budget, &planned, &tree) == TB_OK);
        CHECK(tb_simulate(NULL, &on, &tree, &simulated, &peak) == TB_OK);
        CHECK(planned == simulated);
        CHECK(peak <= budget);
        tb_plan_tree_free(NULL, &tree);
    }
    tb_plan_tree tree = {0};
    CHECK(tb_plan_optimal(NULL, &on, mb_on - 1, mb_on - 1, &cost, &tree) == TB_ERR_INFEASIBLE);
    tb_plan_tree_free(NULL, &tree);
}

/* Stop hook: stops at the poll number ctx->stop_at (1-based), counts polls. */
typedef struct stop_ctx {
    int polls;
    int stop_at;
} stop_ctx;

static int stop_after(void *ctx)
{
    stop_ctx *sc = ctx;
    sc->polls++;
    return sc->polls >= sc->stop_at;
}

/* A chain long enough for the DP to poll many times. */
static tb_chain long_chain(size_t n, double *f, double *b, int64_t *x, int64_t *g)
{
    for (size_t i = 0; i < n; i++) {
        f[i] = 1.0 + (double)(i % 7);
        b[i] = 2.0;
        x[i] = 100 + (int64_t)(i % 5);
        g[i] = 50 + (int64_t)(i % 3);
    }
    return (tb_chain){n, f, b, x, g, NULL, 0, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL};
}

static void test_interrupt(void)
{
    enum { N = 120 };
    static double f[N], b[N];
    static int64_t x[N], g[N];
    tb_chain c = long_chain(N, f, b, x, g);
    double cost = 0;
    int64_t mb = 0, peak = 0;
    tb_plan_tree tree = {0};
    /* a hook that never stops is polled and changes nothing */
    stop_ctx never = {0, 1 << 30};
    tb_stop hook = {stop_after, &never};
    CHECK(tb_plan_optimal_ex(NULL, &hook, &c, 6000, 2048, &cost, &tree) == TB_OK);
    CHECK(never.polls > 2);
    double cost_plain = 0;
    tb_plan_tree tree2 = {0};
    CHECK(tb_plan_optimal(NULL, &c, 6000, 2048, &cost_plain, &tree2) == TB_OK);
    CHECK(cost == cost_plain && tree.n_nodes == tree2.n_nodes);
    tb_plan_tree_free(NULL, &tree2);
    CHECK(tb_simulate_ex(NULL, &hook, &c, &tree, &cost, &peak) == TB_OK);
    tb_plan_tree_free(NULL, &tree);
    /* stopping at any poll: TB_ERR_INTERRUPTED, nothing leaked */
    int total = never.polls;
    for (int k = 1; k <= total; k += 1 + total / 16) {
        tb_counting_state cs = {0, 0, 0, 0};
        tb_allocator a = tb_counting_allocator(&cs);
        stop_ctx sc = {0, k};
        tb_stop h = {stop_after, &sc};
        tb_status st = tb_plan_optimal_ex(&a, &h, &c, 6000, 2048, &cost, &tree);
        CHECK(st == TB_ERR_INTERRUPTED);
        tb_plan_tree_free(&a, &tree);
        CHECK(cs.live == 0);
    }
    enum { M = 400 }; /* min_budget does less work a row: needs a longer chain to poll */
    static double mf[M], mbk[M];
    static int64_t mx[M], mg[M];
    tb_chain m = long_chain(M, mf, mbk, mx, mg);
    stop_ctx sc = {0, 1};
    tb_stop h = {stop_after, &sc};
    tb_counting_state cs = {0, 0, 0, 0};
    tb_allocator a = tb_counting_allocator(&cs);
    CHECK(tb_min_budget_ex(&a, &h, &m, &mb, &cost, &tree) == TB_ERR_INTERRUPTED);
    CHECK(sc.polls == 1);
    tb_plan_tree_free(&a, &tree);
    CHECK(cs.live == 0);
    /* a NULL hook, or a hook without a function, never stops */
    tb_stop empty = {NULL, NULL};
    CHECK(tb_min_budget_ex(NULL, &empty, &c, &mb, &cost, &tree) == TB_OK);
    tb_plan_tree_free(NULL, &tree);
    CHECK(tb_min_budget_ex(NULL, NULL, &c, &mb, &cost, &tree) == TB_OK);
    tb_plan_tree_free(NULL, &tree);
}

static void test_limits(void)
{
    /* huge costs: a sum that would overflow is rejected up front, not "infeasible" */
    double f[3] = {1e308, 1e308, 1e308}, b[3] = {1e308, 1e308, 1e308};
    int64_t x[3] = {1, 1, 1}, g[3] = {1, 1, 1};
    tb_chain c = {3, f, b, x, g, NULL, 0, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL};
    CHECK(tb_chain_check(&c) == TB_ERR_OVERFLOW);
    double cost = 0;
    tb_plan_tree tree = {0};
    CHECK(tb_plan_optimal(NULL, &c, 100, 512, &cost, &tree) == TB_ERR_OVERFLOW);
    /* just under the bound: plans, finite cost */
    double lim = tb_max_cost_sum(3) / 6.5;
    for (int i = 0; i < 3; i++)
        f[i] = b[i] = lim;
    CHECK(tb_chain_check(&c) == TB_OK);
    CHECK(tb_plan_optimal(NULL, &c, 3, 512, &cost, &tree) == TB_OK);
    CHECK(isfinite(cost) && cost > 0);
    tb_plan_tree_free(NULL, &tree);
    int64_t mb = 0;
    CHECK(tb_min_budget(NULL, &c, &mb, &cost, &tree) == TB_OK && isfinite(cost));
    tb_plan_tree_free(NULL, &tree);

    /* too many DP cells (stages x slots): TB_ERR_LIMIT before allocating them */
    enum { N = 400 };
    static double lf[N], lb[N];
    static int64_t lx[N], lg[N];
    tb_chain l = long_chain(N, lf, lb, lx, lg);
    for (size_t i = 0; i < N; i++)
        lx[i] = lg[i] = (int64_t)1 << 30; /* 16384 slots each: rows hold millions of cells */
    CHECK(tb_plan_optimal(NULL, &l, (int64_t)1 << 40, (int64_t)1 << 24, &cost, &tree) ==
          TB_ERR_LIMIT);
    CHECK(tree.n_nodes == 0);
}

/* Options of one-stage top-level regions (the two-level planner's level 1). Chain
 * f = 1 10 1, b = 1, x = 1, g = 1 10 1; stage 1 may keep 1 byte to save 8. At budget 13
 * the plain optimum recomputes stage 1 whole (25); with the option: 18, region 1 with
 * option 0, and the simulator agrees on cost and peak. */
static void test_options(void)
{
    static const double f[] = {1, 10, 1}, b[] = {1, 1, 1}, save[] = {8}, big[] = {11};
    static const int64_t x[] = {1, 1, 1}, g[] = {1, 10, 1}, ob[] = {1}, neg[] = {-1};
    static const int32_t first[] = {0, 0, 1, 1}, bad_first[] = {0, 1, 0, 1};
    tb_chain plain = {3, f, b, x, g, NULL, 0, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL};
    tb_chain c = {3, f, b, x, g, NULL, 0, NULL, 0, 1, first, ob, save, NULL, NULL, NULL};
    tb_plan_tree tree = {0};
    double cost = 0, scost = 0;
    int64_t peak = 0;
    CHECK(tb_plan_optimal(NULL, &plain, 13, 13, &cost, &tree) == TB_OK);
    CHECK(cost == 25.0);
    tb_plan_tree_free(NULL, &tree);
    CHECK(tb_plan_optimal(NULL, &c, 13, 13, &cost, &tree) == TB_OK);
    CHECK(cost == 18.0);
    int found = 0;
    for (size_t j = 0; j < tree.n_nodes; j++)
        if (tree.kind[j] == TB_NODE_REGION && tree.start[j] == 1 && tree.opt[j] == 0)
            found = 1;
    CHECK(found);
    CHECK(tb_simulate(NULL, &c, &tree, &scost, &peak) == TB_OK);
    CHECK(scost == 18.0);
    CHECK(peak <= 13);
    /* the same tree on the chain without options is not a valid tree */
    CHECK(tb_simulate(NULL, &plain, &tree, &scost, &peak) == TB_ERR_INVALID);
    tb_plan_tree_free(NULL, &tree);
    /* a budget too small for the option's byte: the plain choice */
    CHECK(tb_plan_optimal(NULL, &c, 12, 12, &cost, &tree) == TB_OK);
    CHECK(cost == 26.0);
    tb_plan_tree_free(NULL, &tree);
    /* bad options */
    tb_chain e1 = {3, f, b, x, g, NULL, 0, NULL, 0, 1, first, ob, big, NULL, NULL, NULL}; /* save > f */
    tb_chain e2 = {3, f, b, x, g, NULL, 0, NULL, 0, 1, bad_first, ob, save, NULL, NULL, NULL};
    tb_chain e3 = {3, f, b, x, g, NULL, 0, NULL, 0, 1, first, neg, save, NULL, NULL, NULL};
    tb_chain e4 = {3, f, b, x, g, NULL, 0, NULL, 0, 1, NULL, ob, save, NULL, NULL, NULL};
    CHECK(tb_chain_check(&e1) == TB_ERR_INVALID);
    CHECK(tb_chain_check(&e2) == TB_ERR_INVALID);
    CHECK(tb_chain_check(&e3) == TB_ERR_INVALID);
    CHECK(tb_chain_check(&e4) == TB_ERR_INVALID);
    /* overlap: 4 kept bytes that are stage 1's saved ones fit budget 13 (cost 17); without
     * the overlap they do not (25); an overlap above the bytes is invalid */
    static const int64_t ob4[] = {4}, ov4[] = {4}, ov5[] = {5};
    tb_chain co = {3, f, b, x, g, NULL, 0, NULL, 0, 1, first, ob4, save, ov4, NULL, NULL};
    tb_chain cz = {3, f, b, x, g, NULL, 0, NULL, 0, 1, first, ob4, save, NULL, NULL, NULL};
    tb_chain e5 = {3, f, b, x, g, NULL, 0, NULL, 0, 1, first, ob4, save, ov5, NULL, NULL};
    CHECK(tb_plan_optimal(NULL, &co, 13, 13, &cost, &tree) == TB_OK);
    CHECK(cost == 17.0);
    CHECK(tb_simulate(NULL, &co, &tree, &scost, &peak) == TB_OK);
    CHECK(scost == 17.0 && peak <= 13);
    tb_plan_tree_free(NULL, &tree);
    CHECK(tb_plan_optimal(NULL, &cz, 13, 13, &cost, &tree) == TB_OK);
    CHECK(cost == 25.0);
    tb_plan_tree_free(NULL, &tree);
    CHECK(tb_chain_check(&e5) == TB_ERR_INVALID);
}

/* Working bytes: a stage's backward needs w beyond its saved bytes. */
static void test_working(void)
{
    static const double f[] = {1, 1, 1}, b[] = {1, 1, 1};
    static const int64_t x[] = {1, 1, 1}, g[] = {4, 4, 4}, w[] = {0, 0, 7}, neg[] = {0, -1, 0};
    tb_chain plain = {3, f, b, x, g, NULL, 0, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL};
    tb_chain cw = {3, f, b, x, g, NULL, 0, NULL, 0, 0, NULL, NULL, NULL, NULL, w, NULL};
    tb_chain bad = {3, f, b, x, g, NULL, 0, NULL, 0, 0, NULL, NULL, NULL, NULL, neg, NULL};
    CHECK(tb_chain_check(&bad) == TB_ERR_INVALID);
    tb_plan_tree tree = {0};
    double cost = 0;
    int64_t peak = 0, lo = 0, lw = 0;
    /* store-all: 1 + 4 + 1 + 4 + 1 + 4 = 15 held, + 7 at stage 2's backward */
    CHECK(tb_plan_baseline(NULL, &cw, TB_PLANNER_STORE_ALL, 0, &tree) == TB_OK);
    CHECK(tb_simulate(NULL, &plain, &tree, &cost, &peak) == TB_OK && peak == 15);
    CHECK(tb_simulate(NULL, &cw, &tree, &cost, &peak) == TB_OK && peak == 22);
    tb_plan_tree_free(NULL, &tree);
    CHECK(tb_min_budget(NULL, &plain, &lo, &cost, NULL) == TB_OK);
    CHECK(tb_min_budget(NULL, &cw, &lw, &cost, NULL) == TB_OK);
    CHECK(lw > lo);
    /* the minimum with w is feasible for the DP and the plan fits it; one byte less not */
    CHECK(tb_plan_optimal(NULL, &cw, lw, lw, &cost, &tree) == TB_OK);
    CHECK(tb_simulate(NULL, &cw, &tree, &cost, &peak) == TB_OK && peak <= lw);
    tb_plan_tree_free(NULL, &tree);
    CHECK(tb_plan_optimal(NULL, &cw, lw - 1, lw - 1, &cost, &tree) == TB_ERR_INFEASIBLE);
    tb_plan_tree_free(NULL, &tree);
}

int main(void)
{
    test_working();
    test_interrupt();
    test_limits();
    test_transient();
    test_live_intervals();
    test_known_answers();
    test_baselines();
    test_invalid();
    test_options();
    test_alloc_failures();
    printf("test_planner: %s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
