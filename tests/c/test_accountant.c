/* C unit tests of the memory accountant: dedupe by storage, peak, events, growth,
 * deletion with probe runs, errors, and every allocation failing in turn. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "accountant.h"

static int failures = 0;
#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); failures++; } } while (0)

static void test_basic(void)
{
    tb_accountant a;
    CHECK(tb_acct_init(&a, NULL) == TB_OK);
    CHECK(tb_acct_hold(&a, 0x1000, 100) == TB_OK);
    CHECK(tb_acct_hold(&a, 0x1000, 100) == TB_OK); /* same storage: counted once */
    CHECK(a.live_bytes == 100);
    CHECK(tb_acct_holds(&a, 0x1000) == 2);
    CHECK(tb_acct_hold(&a, 0x2000, 50) == TB_OK);
    CHECK(a.live_bytes == 150 && a.peak_bytes == 150);
    CHECK(tb_acct_release(&a, 0x1000) == TB_OK);
    CHECK(a.live_bytes == 150);
    CHECK(tb_acct_release(&a, 0x1000) == TB_OK);
    CHECK(a.live_bytes == 50 && a.peak_bytes == 150);
    CHECK(tb_acct_holds(&a, 0x1000) == 0);
    CHECK(tb_acct_release(&a, 0x1000) == TB_ERR_STATE);
    CHECK(tb_acct_hold(&a, 0, 1) == TB_ERR_INVALID);
    CHECK(tb_acct_release(&a, 0) == TB_ERR_INVALID);
    tb_acct_unpack(&a);
    CHECK(a.n_unpack == 1 && a.n_hold == 3 && a.n_release == 2);
    CHECK(tb_acct_recompute(&a, 10, 0.5) == TB_OK);
    CHECK(tb_acct_recompute(&a, 10, -1.0) == TB_ERR_INVALID);
    CHECK(tb_acct_recompute(&a, 10, NAN) == TB_ERR_INVALID);
    CHECK(a.n_recompute == 1 && a.recompute_bytes == 10 && a.recompute_seconds == 0.5);
    tb_acct_reset_peak(&a);
    CHECK(a.peak_bytes == 50 && a.n_hold == 0 && a.n_recompute == 0 && a.recompute_bytes == 0);
    CHECK(tb_acct_hold(&a, 0x3000, UINT64_MAX) == TB_ERR_OVERFLOW);
    CHECK(a.live_bytes == 50);
    tb_acct_destroy(&a);
    tb_acct_destroy(&a); /* idempotent */
    CHECK(tb_acct_hold(&a, 1, 1) == TB_ERR_STATE);
    CHECK(tb_acct_init(NULL, NULL) == TB_ERR_INVALID);
}

/* Many keys with aligned addresses: growth, then release in a scattered order must
 * keep every remaining key findable (backward-shift deletion). */
static void test_many(void)
{
    tb_accountant a;
    CHECK(tb_acct_init(&a, NULL) == TB_OK);
    const uint64_t n = 5000;
    for (uint64_t i = 1; i <= n; i++)
        CHECK(tb_acct_hold(&a, i * 4096, i) == TB_OK);
    CHECK(a.live_bytes == n * (n + 1) / 2);
    uint64_t expect = a.live_bytes;
    for (uint64_t i = 1; i <= n; i += 3) {
        CHECK(tb_acct_release(&a, i * 4096) == TB_OK);
        expect -= i;
    }
    CHECK(a.live_bytes == expect);
    for (uint64_t i = 1; i <= n; i++)
        CHECK(tb_acct_holds(&a, i * 4096) == ((i - 1) % 3 == 0 ? 0u : 1u));
    for (uint64_t i = 1; i <= n; i++)
        if ((i - 1) % 3 != 0)
            CHECK(tb_acct_release(&a, i * 4096) == TB_OK);
    CHECK(a.live_bytes == 0 && a.used == 0);
    CHECK(a.peak_bytes == n * (n + 1) / 2);
    tb_acct_destroy(&a);
}

/* Fail the k-th allocation for every k until a run succeeds: no leak, no crash, and
 * the accountant stays consistent after a failed hold. */
static void test_alloc_failures(void)
{
    for (size_t k = 1;; k++) {
        tb_counting_state st = {0, 0, 0, k};
        tb_allocator al = tb_counting_allocator(&st);
        tb_accountant a;
        tb_status s = tb_acct_init(&a, &al);
        int failed = 0;
        if (s != TB_OK) {
            CHECK(s == TB_ERR_NOMEM);
            CHECK(st.live == 0);
            continue;
        }
        uint64_t held = 0;
        for (uint64_t i = 1; i <= 300; i++) {
            s = tb_acct_hold(&a, i * 64, 8);
            if (s != TB_OK) {
                CHECK(s == TB_ERR_NOMEM);
                failed = 1;
                break;
            }
            held++;
        }
        CHECK(a.live_bytes == held * 8);
        for (uint64_t i = 1; i <= held; i++)
            CHECK(tb_acct_release(&a, i * 64) == TB_OK);
        CHECK(a.live_bytes == 0);
        tb_acct_destroy(&a);
        CHECK(st.live == 0);
        if (!failed)
            break;
    }
}

int main(void)
{
    test_basic();
    test_many();
    test_alloc_failures();
    printf("test_accountant: %s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
