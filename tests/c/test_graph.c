/* C unit tests of the graph core: hand-made graphs with known answers, error codes,
 * and an allocation-failure loop. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"

static int failures = 0;
#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); failures++; } } while (0)

#define MAXN 16
#define MAXE 64

/* A graph description; inputs of node v are in[v][0..nin[v]). */
typedef struct spec {
    int64_t n;
    int64_t out[MAXN], saved[MAXN];
    double cost[MAXN];
    uint32_t flags[MAXN];
    int nin[MAXN];
    int64_t in[MAXN][4];
} spec;

static tb_status build(const tb_allocator *a, const spec *s, tb_graph **g)
{
    int64_t off[MAXN + 1], idx[MAXE];
    off[0] = 0;
    for (int64_t v = 0; v < s->n; v++) {
        off[v + 1] = off[v] + s->nin[v];
        for (int k = 0; k < s->nin[v]; k++)
            idx[off[v] + k] = s->in[v][k];
    }
    return tb_graph_create(a, s->n, s->out, s->saved, s->cost, s->flags, off, idx, g);
}

static int eq64(const int64_t *a, const int64_t *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

/* 0 INPUT(100) -> 1 (200) -> 2 (300) -> 3 OUTPUT (4) */
static spec chain_spec(void)
{
    spec s;
    memset(&s, 0, sizeof s);
    s.n = 4;
    int64_t out[] = {100, 200, 300, 4};
    double cost[] = {0, 1, 2, 3};
    for (int v = 0; v < 4; v++) {
        s.out[v] = out[v];
        s.cost[v] = cost[v];
        if (v > 0) {
            s.nin[v] = 1;
            s.in[v][0] = v - 1;
        }
    }
    s.flags[0] = TB_FLAG_INPUT;
    s.flags[3] = TB_FLAG_OUTPUT;
    return s;
}

static void test_chain(void)
{
    spec s = chain_spec();
    tb_graph *g = NULL;
    CHECK(build(NULL, &s, &g) == TB_OK);
    int64_t order[] = {0, 1, 2, 3}, fr[] = {100, 200, 300, 4};
    CHECK(eq64(g->order, order, 4));
    CHECK(eq64(g->frontier, fr, 4));
    CHECK(g->store_all_peak == 300);
    CHECK(g->lower_bound == 300);

    tb_stage *st = NULL;
    int64_t L = 0;
    CHECK(tb_graph_coarsen(g, 10, &st, &L) == TB_OK);
    CHECK(L == 3);
    if (L == 3) {
        CHECK(st[0].start == 0 && st[0].end == 2 && st[1].start == 2 && st[2].end == 4);
        CHECK(st[0].input_bytes == 100 && st[1].input_bytes == 200 && st[2].input_bytes == 300);
        CHECK(st[0].forward_cost == 1.0 && st[2].forward_cost == 3.0);
        CHECK(st[2].backward_cost == 6.0);
        CHECK(st[1].saved_bytes == 0 && st[0].never_recompute == 0);
    }
    tb_graph_free_stages(g, st);
    CHECK(tb_graph_coarsen(g, 2, &st, &L) == TB_OK);
    CHECK(L == 2);
    if (L == 2)
        CHECK(st[0].end == 3 && st[1].start == 3 && st[1].end == 4);
    tb_graph_free_stages(g, st);
    CHECK(tb_graph_coarsen(g, 1, &st, &L) == TB_OK);
    CHECK(L == 1 && st[0].start == 0 && st[0].end == 4 && st[0].forward_cost == 6.0);
    tb_graph_free_stages(g, st);
    CHECK(tb_graph_coarsen(g, 0, &st, &L) == TB_ERR_INVALID);
    CHECK(st == NULL);
    tb_graph_destroy(g);

    /* saved values: 1 and 2 are saved for backward, node 2 saves 50 extra bytes */
    s.flags[1] |= TB_FLAG_OUTPUT_SAVED;
    s.flags[2] |= TB_FLAG_OUTPUT_SAVED | TB_FLAG_NEVER_RECOMPUTE;
    s.saved[2] = 50;
    CHECK(build(NULL, &s, &g) == TB_OK);
    CHECK(eq64(g->frontier, fr, 4));
    CHECK(g->store_all_peak == 554); /* 4 + 200 + 300 + 50 at the end */
    CHECK(g->lower_bound == 554);    /* node 2: output 4 + saved input 200 + own 300 + 50 */
    CHECK(tb_graph_coarsen(g, 10, &st, &L) == TB_OK);
    CHECK(L == 3);
    if (L == 3) {
        CHECK(st[0].saved_bytes == 0);  /* node 1's value is the next boundary */
        CHECK(st[1].saved_bytes == 50); /* node 2's value is the next boundary too */
        CHECK(st[1].never_recompute == 1 && st[2].never_recompute == 0);
    }
    tb_graph_free_stages(g, st);
    CHECK(tb_graph_coarsen(g, 1, &st, &L) == TB_OK);
    CHECK(L == 1 && st[0].saved_bytes == 550); /* 200 + 300 + 50 */
    tb_graph_free_stages(g, st);
    tb_graph_destroy(g);
}

static void test_diamond_and_skip(void)
{
    /* diamond: 0 INPUT(10); 1 = f(0) 20; 2 = g(0) 30; 3 = h(1, 2) OUTPUT 5 */
    spec s;
    memset(&s, 0, sizeof s);
    s.n = 4;
    int64_t out[] = {10, 20, 30, 5};
    for (int v = 0; v < 4; v++) {
        s.out[v] = out[v];
        s.cost[v] = 1.0;
    }
    s.flags[0] = TB_FLAG_INPUT;
    s.flags[3] = TB_FLAG_OUTPUT;
    s.nin[1] = 1; s.in[1][0] = 0;
    s.nin[2] = 1; s.in[2][0] = 0;
    s.nin[3] = 2; s.in[3][0] = 1; s.in[3][1] = 2;
    tb_graph *g = NULL;
    CHECK(build(NULL, &s, &g) == TB_OK);
    int64_t fr[] = {10, 30, 50, 5};
    CHECK(eq64(g->frontier, fr, 4));
    CHECK(g->store_all_peak == 50);
    tb_stage *st = NULL;
    int64_t L = 0;
    CHECK(tb_graph_coarsen(g, 100, &st, &L) == TB_OK);
    CHECK(L == 3);
    if (L == 3)
        CHECK(st[1].start == 2 && st[1].input_bytes == 30); /* 0 is still live: skip */
    tb_graph_free_stages(g, st);
    tb_graph_destroy(g);

    /* skip: 0 INPUT(8); 1 = f(0) 16; 2 = f(1) 16; 3 = add(2, 1) OUTPUT 4 */
    s.out[0] = 8; s.out[1] = 16; s.out[2] = 16; s.out[3] = 4;
    s.in[2][0] = 1;
    s.in[3][0] = 2; s.in[3][1] = 1;
    CHECK(build(NULL, &s, &g) == TB_OK);
    int64_t fr2[] = {8, 16, 32, 4};
    CHECK(eq64(g->frontier, fr2, 4));
    CHECK(tb_graph_coarsen(g, 100, &st, &L) == TB_OK);
    CHECK(L == 3);
    if (L == 3)
        CHECK(st[2].input_bytes == 32 && st[0].input_bytes == 8);
    tb_graph_free_stages(g, st);
    tb_graph_destroy(g);
}

static void test_alias_param_and_order(void)
{
    /* 0 INPUT(100); 1 PARAM(1000); 2 = 1.t() ALIAS; 3 = mm(0, 2) 50 OUTPUT_SAVED;
     * 4 = relu(3) 50 OUTPUT */
    spec s;
    memset(&s, 0, sizeof s);
    s.n = 5;
    int64_t out[] = {100, 1000, 1000, 50, 50};
    for (int v = 0; v < 5; v++)
        s.out[v] = out[v];
    s.cost[3] = 10.0;
    s.cost[4] = 1.0;
    s.flags[0] = TB_FLAG_INPUT;
    s.flags[1] = TB_FLAG_PARAM;
    s.flags[2] = TB_FLAG_ALIAS;
    s.flags[3] = TB_FLAG_OUTPUT_SAVED;
    s.flags[4] = TB_FLAG_OUTPUT;
    s.nin[2] = 1; s.in[2][0] = 1;
    s.nin[3] = 2; s.in[3][0] = 0; s.in[3][1] = 2;
    s.nin[4] = 1; s.in[4][0] = 3;
    tb_graph *g = NULL;
    CHECK(build(NULL, &s, &g) == TB_OK);
    int64_t fr[] = {100, 100, 100, 50, 50};
    CHECK(eq64(g->frontier, fr, 5));
    CHECK(g->owner[2] == 1);
    CHECK(g->store_all_peak == 100);
    CHECK(g->lower_bound == 100);
    tb_stage *st = NULL;
    int64_t L = 0;
    CHECK(tb_graph_coarsen(g, 100, &st, &L) == TB_OK);
    CHECK(L == 3); /* placeholders 0 and 1 join the first stage */
    if (L == 3)
        CHECK(st[0].end == 3 && st[0].input_bytes == 100 && st[1].saved_bytes == 0 &&
              st[2].saved_bytes == 0);
    tb_graph_free_stages(g, st);
    tb_graph_destroy(g);

    /* alias keeps its root alive: 0 INPUT(100); 1 = view(0) ALIAS; 2 = f(1) OUTPUT 10 */
    memset(&s, 0, sizeof s);
    s.n = 3;
    s.out[0] = 100; s.out[1] = 100; s.out[2] = 10;
    s.flags[0] = TB_FLAG_INPUT; s.flags[1] = TB_FLAG_ALIAS; s.flags[2] = TB_FLAG_OUTPUT;
    s.nin[1] = 1; s.in[1][0] = 0;
    s.nin[2] = 1; s.in[2][0] = 1;
    CHECK(build(NULL, &s, &g) == TB_OK);
    int64_t fr2[] = {100, 100, 10};
    CHECK(eq64(g->frontier, fr2, 3));
    tb_graph_destroy(g);

    /* not topological as given: 0 = f(2); 1 INPUT; 2 = g(1) -> Kahn order 1, 2, 0 */
    memset(&s, 0, sizeof s);
    s.n = 3;
    s.out[0] = 10; s.out[1] = 5; s.out[2] = 7;
    s.flags[1] = TB_FLAG_INPUT; s.flags[0] = TB_FLAG_OUTPUT;
    s.nin[0] = 1; s.in[0][0] = 2;
    s.nin[2] = 1; s.in[2][0] = 1;
    CHECK(build(NULL, &s, &g) == TB_OK);
    int64_t order[] = {1, 2, 0}, fr3[] = {5, 7, 10};
    CHECK(eq64(g->order, order, 3));
    CHECK(eq64(g->frontier, fr3, 3));
    tb_graph_destroy(g);
}

static void test_errors(void)
{
    spec s = chain_spec();
    tb_graph *g = (tb_graph *)&s; /* must be reset to NULL on error */
    s.in[1][0] = 1; /* self-loop */
    CHECK(build(NULL, &s, &g) == TB_ERR_RANGE && g == NULL);
    s.in[1][0] = 9; /* out of range */
    CHECK(build(NULL, &s, &g) == TB_ERR_RANGE);
    s.in[1][0] = -1;
    CHECK(build(NULL, &s, &g) == TB_ERR_RANGE);
    s.in[1][0] = 2; /* 1 <- 2 <- 1: a cycle */
    CHECK(build(NULL, &s, &g) == TB_ERR_CYCLE && g == NULL);
    s = chain_spec();
    s.out[2] = -5;
    CHECK(build(NULL, &s, &g) == TB_ERR_INVALID);
    s = chain_spec();
    s.saved[2] = -1;
    CHECK(build(NULL, &s, &g) == TB_ERR_INVALID);
    s = chain_spec();
    s.cost[1] = NAN;
    CHECK(build(NULL, &s, &g) == TB_ERR_INVALID);
    s.cost[1] = INFINITY;
    CHECK(build(NULL, &s, &g) == TB_ERR_INVALID);
    s.cost[1] = -1.0;
    CHECK(build(NULL, &s, &g) == TB_ERR_INVALID);
    s = chain_spec();
    s.flags[1] = 256;
    CHECK(build(NULL, &s, &g) == TB_ERR_INVALID);
    s = chain_spec();
    s.out[1] = INT64_MAX;
    CHECK(build(NULL, &s, &g) == TB_ERR_OVERFLOW);
    /* an empty graph is fine */
    int64_t off0 = 0;
    CHECK(tb_graph_create(NULL, 0, NULL, NULL, NULL, NULL, &off0, NULL, &g) == TB_OK);
    CHECK(g != NULL && g->store_all_peak == 0 && g->lower_bound == 0);
    tb_stage *st = NULL;
    int64_t L = 7;
    CHECK(tb_graph_coarsen(g, 3, &st, &L) == TB_OK && L == 0 && st == NULL);
    tb_graph_destroy(g);
}

/* a full run on a non-topological graph with aliases (exercises Kahn's allocations) */
static tb_status full_run(const tb_allocator *a)
{
    spec s;
    memset(&s, 0, sizeof s);
    s.n = 6;
    for (int v = 0; v < 6; v++) {
        s.out[v] = 10 * (v + 1);
        s.cost[v] = (double)v;
        s.saved[v] = v;
    }
    s.flags[5] = TB_FLAG_INPUT;
    s.flags[1] = TB_FLAG_ALIAS | TB_FLAG_OUTPUT_SAVED;
    s.flags[3] = TB_FLAG_OUTPUT;
    s.nin[0] = 1; s.in[0][0] = 5;
    s.nin[1] = 1; s.in[1][0] = 0;
    s.nin[2] = 2; s.in[2][0] = 1; s.in[2][1] = 5;
    s.nin[3] = 2; s.in[3][0] = 2; s.in[3][1] = 4;
    s.nin[4] = 1; s.in[4][0] = 0;
    tb_graph *g = NULL;
    tb_status st = build(a, &s, &g);
    if (st != TB_OK)
        return st;
    tb_stage *stages = NULL;
    int64_t L = 0;
    st = tb_graph_coarsen(g, 3, &stages, &L);
    int64_t *iv = NULL, n_iv = -1;
    if (st == TB_OK) {
        st = tb_graph_live_intervals(g, stages, L, &iv, &n_iv);
        if (st == TB_OK && n_iv < 1)
            st = TB_ERR_STATE; /* the graph has boundary-crossing values */
    }
    tb_graph_free_intervals(g, iv);
    tb_graph_free_stages(g, stages);
    tb_graph_destroy(g);
    return st;
}

static void test_alloc_failures(void)
{
    tb_counting_state cs = {0, 0, 0, 0};
    tb_allocator a = tb_counting_allocator(&cs);
    CHECK(full_run(&a) == TB_OK);
    CHECK(cs.live == 0);
    size_t total = cs.n_alloc;
    CHECK(total > 10);
    for (size_t k = 1; k <= total; k++) {
        tb_counting_state c2 = {0, 0, 0, k};
        tb_allocator a2 = tb_counting_allocator(&c2);
        tb_status st = full_run(&a2);
        CHECK(st == TB_ERR_NOMEM);
        CHECK(c2.live == 0);
        if (st != TB_ERR_NOMEM || c2.live != 0)
            fprintf(stderr, "  failing allocation %zu of %zu\n", k, total);
    }
}

int main(void)
{
    test_chain();
    test_diamond_and_skip();
    test_alias_param_and_order();
    test_errors();
    test_alloc_failures();
    printf("test_graph: %s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
