/* C unit tests of the knapsack: brute force on random small cases, rounding never
 * exceeds the capacity, bad arguments, stopping, every allocation failing in turn. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "knapsack.h"

static int failures = 0;
#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); failures++; } } while (0)

static unsigned long long rng_state = 12345;
static unsigned rnd(unsigned m)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (unsigned)((rng_state >> 33) % m);
}

static double brute(size_t n, const int64_t *w, const double *v, int64_t cap)
{
    double best = 0.0;
    for (unsigned mask = 0; mask < (1u << n); mask++) {
        int64_t tw = 0;
        double tv = 0.0;
        for (size_t i = 0; i < n; i++)
            if (mask & (1u << i)) {
                tw += w[i];
                tv += v[i];
            }
        if (tw <= cap && tv > best)
            best = tv;
    }
    return best;
}

static void test_brute_force(void)
{
    for (int t = 0; t < 300; t++) {
        size_t n = 1 + rnd(10);
        int64_t w[10];
        double v[10];
        uint8_t ch[10];
        for (size_t i = 0; i < n; i++) {
            w[i] = rnd(50);
            v[i] = (double)rnd(100);
        }
        int64_t cap = rnd(200);
        double val = -1.0;
        /* slots >= capacity: exact */
        CHECK(tb_knapsack(NULL, NULL, n, w, v, cap, 256, &val, ch) == TB_OK);
        CHECK(fabs(val - brute(n, w, v, cap)) < 1e-9);
        int64_t used = 0;
        double sum = 0.0;
        for (size_t i = 0; i < n; i++)
            if (ch[i]) {
                used += w[i];
                sum += v[i];
            }
        CHECK(used <= cap && fabs(sum - val) < 1e-9);
        /* coarse slots: still fits, never better than exact */
        double coarse = -1.0;
        CHECK(tb_knapsack(NULL, NULL, n, w, v, cap, 3, &coarse, ch) == TB_OK);
        used = 0;
        for (size_t i = 0; i < n; i++)
            used += ch[i] ? w[i] : 0;
        CHECK(used <= cap && coarse <= val + 1e-9);
    }
}

static void test_errors(void)
{
    int64_t w[2] = {1, 2};
    double v[2] = {1.0, 2.0};
    uint8_t ch[2];
    double val;
    CHECK(tb_knapsack(NULL, NULL, 2, w, v, -1, 8, &val, ch) == TB_ERR_INVALID);
    CHECK(tb_knapsack(NULL, NULL, 2, w, v, 5, 0, &val, ch) == TB_ERR_INVALID);
    CHECK(tb_knapsack(NULL, NULL, 2, NULL, v, 5, 8, &val, ch) == TB_ERR_INVALID);
    double bad[2] = {1.0, NAN};
    CHECK(tb_knapsack(NULL, NULL, 2, w, bad, 5, 8, &val, ch) == TB_ERR_INVALID);
    int64_t neg[2] = {1, -2};
    CHECK(tb_knapsack(NULL, NULL, 2, neg, v, 5, 8, &val, ch) == TB_ERR_INVALID);
    CHECK(tb_knapsack(NULL, NULL, 2, w, v, 5, TB_KNAPSACK_MAX_SLOTS + 1, &val, ch) == TB_ERR_LIMIT);
    CHECK(tb_knapsack(NULL, NULL, 0, NULL, NULL, 5, 8, &val, NULL) == TB_OK && val == 0.0);
}

static int stop_now(void *ctx)
{
    (void)ctx;
    return 1;
}

static void test_stop_and_allocations(void)
{
    enum { N = 5000 };
    int64_t *w = malloc(N * sizeof(int64_t));
    double *v = malloc(N * sizeof(double));
    uint8_t *ch = malloc(N);
    CHECK(w && v && ch);
    for (int i = 0; i < N; i++) {
        w[i] = 1 + rnd(100);
        v[i] = rnd(1000);
    }
    double val;
    tb_stop stop = {stop_now, NULL};
    CHECK(tb_knapsack(NULL, &stop, N, w, v, 100000, 512, &val, ch) == TB_ERR_INTERRUPTED);
    for (size_t k = 1; k <= 3; k++) {
        tb_counting_state cs = {0};
        cs.fail_at = k;
        tb_allocator a = tb_counting_allocator(&cs);
        CHECK(tb_knapsack(&a, NULL, 10, w, v, 300, 64, &val, ch) == TB_ERR_NOMEM);
        CHECK(cs.live == 0);
    }
    tb_counting_state cs = {0};
    tb_allocator a = tb_counting_allocator(&cs);
    CHECK(tb_knapsack(&a, NULL, 10, w, v, 300, 64, &val, ch) == TB_OK);
    CHECK(cs.live == 0);
    free(w);
    free(v);
    free(ch);
}

int main(void)
{
    test_brute_force();
    test_errors();
    test_stop_and_allocations();
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("test_knapsack: ok\n");
    return 0;
}
