/* test_merkle.c - the RFC 9162 tree: roots, inclusion and consistency proofs against a plain
 * recursive transcription of the RFC, the published RFC 6962 test vectors, and tampered
 * proofs that every verifier must refuse. */
#include <CUnit/Basic.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "merkle.h"
#include "testdata.h"

#define H SDM_HASH_LEN
#define MAXN 256

/* ---- the RFC written out plainly, with its own hashing ------------------------------------ */

/* data: at most 64 bytes */
static void ref_leaf(const uint8_t *data, size_t len, uint8_t out[H])
{
    uint8_t buf[1 + 64];
    buf[0] = 0x00;
    memcpy(buf + 1, data, len);
    crypto_hash_sha256(out, buf, 1 + len);
}

static void ref_node(const uint8_t l[H], const uint8_t r[H], uint8_t out[H])
{
    uint8_t buf[1 + 2 * H];
    buf[0] = 0x01;
    memcpy(buf + 1, l, H);
    memcpy(buf + 1 + H, r, H);
    crypto_hash_sha256(out, buf, sizeof(buf));
}

static uint64_t ref_split(uint64_t n)
{
    uint64_t k = 1;
    while (2 * k < n)
        k *= 2;
    return k;
}

/* MTH(D[0:n]) over leaf hashes. */
static void ref_mth(uint8_t leaves[][H], uint64_t n, uint8_t out[H])
{
    if (n == 0) {
        crypto_hash_sha256(out, NULL, 0);
    } else if (n == 1) {
        memcpy(out, leaves[0], H);
    } else {
        uint64_t k = ref_split(n);
        uint8_t l[H], r[H];
        ref_mth(leaves, k, l);
        ref_mth(leaves + k, n - k, r);
        ref_node(l, r, out);
    }
}

/* PATH(m, D[0:n]). */
static void ref_path(uint8_t leaves[][H], uint64_t m, uint64_t n, uint8_t path[][H], size_t *np)
{
    if (n <= 1)
        return;
    uint64_t k = ref_split(n);
    if (m < k) {
        ref_path(leaves, m, k, path, np);
        ref_mth(leaves + k, n - k, path[(*np)++]);
    } else {
        ref_path(leaves + k, m - k, n - k, path, np);
        ref_mth(leaves, k, path[(*np)++]);
    }
}

/* SUBPROOF(m, D[0:n], b). */
static void ref_subproof(uint8_t leaves[][H], uint64_t m, uint64_t n, int b, uint8_t path[][H],
                         size_t *np)
{
    if (m == n) {
        if (!b)
            ref_mth(leaves, n, path[(*np)++]);
        return;
    }
    uint64_t k = ref_split(n);
    if (m <= k) {
        ref_subproof(leaves, m, k, b, path, np);
        ref_mth(leaves + k, n - k, path[(*np)++]);
    } else {
        ref_subproof(leaves + k, m - k, n - k, 0, path, np);
        ref_mth(leaves, k, path[(*np)++]);
    }
}

/* The sides of the siblings along PATH(m, D[0:n]) from the leaf up ('L': the sibling is
 * on the left). A verifier can tell two sizes apart only where these differ: a proof for
 * one size also holds for another size whose tree has the same shape around the leaf, which
 * is why a root is only ever trusted together with the size it was signed with. */
static size_t ref_sides(uint64_t m, uint64_t n, char *sides)
{
    if (n <= 1) {
        sides[0] = '\0';
        return 0;
    }
    uint64_t k = ref_split(n);
    size_t len = m < k ? ref_sides(m, k, sides) : ref_sides(m - k, n - k, sides);
    sides[len++] = m < k ? 'R' : 'L';
    sides[len] = '\0';
    return len;
}

/* The same for SUBPROOF(m, D[0:n], b); 'S' marks the old tree's own subtree hash. */
static size_t ref_csides(uint64_t m, uint64_t n, int b, char *sides)
{
    size_t len = 0;
    if (m == n) {
        if (!b)
            sides[len++] = 'S';
        sides[len] = '\0';
        return len;
    }
    uint64_t k = ref_split(n);
    len = m <= k ? ref_csides(m, k, b, sides) : ref_csides(m - k, n - k, 0, sides);
    sides[len++] = m <= k ? 'R' : 'L';
    sides[len] = '\0';
    return len;
}

/* Leaf hashes of random leaf data, and a tree holding them. */
static uint8_t leaves[MAXN][H];
static sdm_merkle_t *tree;

static int suite_setup(void)
{
    if (sodium_init() < 0)
        return -1;
    test_rng rng = {2024};
    for (int i = 0; i < MAXN; i++) {
        uint8_t data[64];
        size_t len = test_rng_u64(&rng) % 64;
        for (size_t j = 0; j < len; j++)
            data[j] = (uint8_t)test_rng_u64(&rng);
        ref_leaf(data, len, leaves[i]);
    }
    tree = sdm_merkle_new();
    if (!tree)
        return -1;
    for (int i = 0; i < MAXN; i++)
        if (sdm_merkle_append(tree, leaves[i]) != 0)
            return -1;
    return 0;
}

static int suite_teardown(void)
{
    sdm_merkle_destroy(&tree);
    return 0;
}

static void unhex(const char *hex, uint8_t *out)
{
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_hashes(void)
{
    uint8_t data[3] = {1, 2, 3}, want[H], got[H];
    ref_leaf(data, 3, want);
    sdm_merkle_leaf_hash(data, 3, got);
    CU_ASSERT_EQUAL(memcmp(got, want, H), 0);
    ref_node(leaves[0], leaves[1], want);
    sdm_merkle_node_hash(leaves[0], leaves[1], got);
    CU_ASSERT_EQUAL(memcmp(got, want, H), 0);
    /* left and right are not interchangeable */
    sdm_merkle_node_hash(leaves[1], leaves[0], got);
    CU_ASSERT_NOT_EQUAL(memcmp(got, want, H), 0);
}

static void test_roots_every_size(void)
{
    for (uint64_t n = 0; n <= MAXN; n++) {
        uint8_t want[H], got[H];
        ref_mth(leaves, n, want);
        CU_ASSERT_EQUAL_FATAL(sdm_merkle_root(tree, n, got), 0);
        if (memcmp(got, want, H) != 0) {
            char msg[64];
            snprintf(msg, sizeof(msg), "root of size %llu differs", (unsigned long long)n);
            CU_FAIL(msg);
        }
    }
    uint8_t out[H];
    CU_ASSERT_EQUAL(sdm_merkle_size(tree), MAXN);
    CU_ASSERT_EQUAL(sdm_merkle_root(tree, MAXN + 1, out), -1);
    CU_ASSERT_EQUAL(sdm_merkle_leaf(tree, 17, out), 0);
    CU_ASSERT_EQUAL(memcmp(out, leaves[17], H), 0);
    CU_ASSERT_EQUAL(sdm_merkle_leaf(tree, MAXN, out), -1);
}

/* The same proof must fail once any one thing about it is wrong. */
static void check_inclusion_tampering(uint64_t i, uint64_t n, uint8_t path[][H], size_t np,
                                      const uint8_t root[H], int *size_rejections)
{
    uint8_t bad[65][H];
    memcpy(bad, path, np * H);
    for (size_t j = 0; j < np; j++) {
        bad[j][j % H] ^= 0x40;
        CU_ASSERT_NOT_EQUAL(sdm_merkle_verify_inclusion(leaves[i], i, n, bad, np, root), 0);
        bad[j][j % H] ^= 0x40;
    }
    uint8_t leaf[H];
    memcpy(leaf, leaves[i], H);
    leaf[31] ^= 1;
    CU_ASSERT_NOT_EQUAL(sdm_merkle_verify_inclusion(leaf, i, n, path, np, root), 0);
    if (i + 1 < n)
        CU_ASSERT_NOT_EQUAL(sdm_merkle_verify_inclusion(leaves[i], i + 1, n, path, np, root), 0);
    if (i > 0)
        CU_ASSERT_NOT_EQUAL(sdm_merkle_verify_inclusion(leaves[i], i - 1, n, path, np, root), 0);
    if ((i ^ 2) < n)
        CU_ASSERT_NOT_EQUAL(sdm_merkle_verify_inclusion(leaves[i], i ^ 2, n, path, np, root), 0);
    /* another size: refused unless the tree has the same shape around leaf i */
    char sides[72], other_sides[72];
    ref_sides(i, n, sides);
    for (uint64_t m = i + 1; m <= n + 3; m++) {
        if (m == n)
            continue;
        ref_sides(i, m, other_sides);
        int same_shape = strcmp(sides, other_sides) == 0;
        int holds = sdm_merkle_verify_inclusion(leaves[i], i, m, path, np, root) == 0;
        CU_ASSERT_EQUAL(holds, same_shape);
        *size_rejections += !holds;
    }
    CU_ASSERT_NOT_EQUAL(sdm_merkle_verify_inclusion(leaves[i], n, n, path, np, root), 0);
    /* a path one hash too short or too long */
    if (np > 0)
        CU_ASSERT_NOT_EQUAL(sdm_merkle_verify_inclusion(leaves[i], i, n, path, np - 1, root), 0);
    memset(bad[np], 0xab, H);
    CU_ASSERT_NOT_EQUAL(sdm_merkle_verify_inclusion(leaves[i], i, n, bad, np + 1, root), 0);
    uint8_t other[H];
    memcpy(other, root, H);
    other[0] ^= 0x80;
    CU_ASSERT_NOT_EQUAL(sdm_merkle_verify_inclusion(leaves[i], i, n, path, np, other), 0);
}

static void test_inclusion_all(void)
{
    int failures = 0, size_rejections = 0;
    for (uint64_t n = 1; n <= MAXN; n++) {
        uint8_t root[H];
        ref_mth(leaves, n, root);
        for (uint64_t i = 0; i < n; i++) {
            uint8_t path[64][H], want[64][H];
            size_t np = 99, nw = 0;
            CU_ASSERT_EQUAL_FATAL(sdm_merkle_inclusion(tree, i, n, path, &np), 0);
            ref_path(leaves, i, n, want, &nw);
            /* the exact RFC path, so that other implementations verify it */
            if (np != nw || memcmp(path, want, np * H) != 0)
                failures++;
            if (sdm_merkle_verify_inclusion(leaves[i], i, n, path, np, root) != 0)
                failures++;
            check_inclusion_tampering(i, n, path, np, root, &size_rejections);
        }
    }
    CU_ASSERT_EQUAL(failures, 0);
    CU_ASSERT(size_rejections > 1000);
    uint8_t path[64][H];
    size_t np;
    CU_ASSERT_EQUAL(sdm_merkle_inclusion(tree, 5, 5, path, &np), -1);
    CU_ASSERT_EQUAL(sdm_merkle_inclusion(tree, 0, MAXN + 1, path, &np), -1);
}

static void test_consistency_all(void)
{
    int failures = 0, size_rejections = 0;
    for (uint64_t to = 1; to <= MAXN; to++) {
        uint8_t to_root[H];
        ref_mth(leaves, to, to_root);
        for (uint64_t from = 1; from <= to; from++) {
            uint8_t from_root[H], path[65][H], want[64][H];
            size_t np = 99, nw = 0;
            ref_mth(leaves, from, from_root);
            CU_ASSERT_EQUAL_FATAL(sdm_merkle_consistency(tree, from, to, path, &np), 0);
            if (from < to)
                ref_subproof(leaves, from, to, 1, want, &nw);
            if (np != nw || memcmp(path, want, np * H) != 0)
                failures++;
            if (sdm_merkle_verify_consistency(from, to, from_root, to_root, path, np) != 0)
                failures++;

            for (size_t j = 0; j < np; j++) {
                path[j][j % H] ^= 0x08;
                failures +=
                    sdm_merkle_verify_consistency(from, to, from_root, to_root, path, np) == 0;
                path[j][j % H] ^= 0x08;
            }
            uint8_t bad_root[H];
            memcpy(bad_root, from_root, H);
            bad_root[5] ^= 1;
            failures += sdm_merkle_verify_consistency(from, to, bad_root, to_root, path, np) == 0;
            memcpy(bad_root, to_root, H);
            bad_root[5] ^= 1;
            failures += sdm_merkle_verify_consistency(from, to, from_root, bad_root, path, np) == 0;
            if (np > 0)
                failures +=
                    sdm_merkle_verify_consistency(from, to, from_root, to_root, path, np - 1) == 0;
            memset(path[np], 0xcd, H);
            failures +=
                sdm_merkle_verify_consistency(from, to, from_root, to_root, path, np + 1) == 0;
            /* the proof, roots unchanged, claimed for other sizes: a new size is refused
             * unless its tree has the same shape along the proof, an old size always */
            if (from < to) {
                char sides[140], other_sides[140];
                ref_csides(from, to, 1, sides);
                for (uint64_t m = from + 1; m <= to + 3; m++) {
                    if (m == to)
                        continue;
                    ref_csides(from, m, 1, other_sides);
                    int same_shape = strcmp(sides, other_sides) == 0;
                    int holds =
                        sdm_merkle_verify_consistency(from, m, from_root, to_root, path, np) == 0;
                    failures += holds != same_shape;
                    size_rejections += !holds;
                }
                failures +=
                    sdm_merkle_verify_consistency(from + 1, to, from_root, to_root, path, np) == 0;
                if (from > 1)
                    failures += sdm_merkle_verify_consistency(from - 1, to, from_root, to_root,
                                                              path, np) == 0;
            }
        }
    }
    CU_ASSERT_EQUAL(failures, 0);
    CU_ASSERT(size_rejections > 10000);

    /* the empty tree is consistent with every tree, through an empty proof */
    uint8_t empty[H], root5[H], path[64][H];
    size_t np = 99;
    ref_mth(leaves, 0, empty);
    ref_mth(leaves, 5, root5);
    CU_ASSERT_EQUAL(sdm_merkle_consistency(tree, 0, 5, path, &np), 0);
    CU_ASSERT_EQUAL(np, 0);
    CU_ASSERT_EQUAL(sdm_merkle_verify_consistency(0, 5, empty, root5, path, 0), 0);
    CU_ASSERT_NOT_EQUAL(sdm_merkle_verify_consistency(0, 5, root5, root5, path, 0), 0);
    CU_ASSERT_NOT_EQUAL(sdm_merkle_verify_consistency(5, 4, root5, root5, path, 0), 0);
    CU_ASSERT_NOT_EQUAL(sdm_merkle_verify_consistency(4, 5, root5, root5, path, 0), 0);
    CU_ASSERT_EQUAL(sdm_merkle_consistency(tree, 6, 5, path, &np), -1);
    CU_ASSERT_EQUAL(sdm_merkle_consistency(tree, 1, MAXN + 1, path, &np), -1);
}

/* RFC 6962's test leaves and the tree heads, inclusion and consistency proofs published
 * with them (certificate-transparency and transparency-dev/merkle test data). */
static const char *const rfc_data[8] = {"",
                                        "00",
                                        "10",
                                        "2021",
                                        "3031",
                                        "40414243",
                                        "5051525354555657",
                                        "606162636465666768696a6b6c6d6e6f"};
static const char *const rfc_roots[9] = {
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

typedef struct rfc_proof {
    uint64_t a, b; /* inclusion: index, size; consistency: from, to */
    int n;
    const char *hashes[3];
} rfc_proof;

static const rfc_proof rfc_inclusion[] = {
    {0,
     8,
     3,
     {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
    {5,
     8,
     3,
     {"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
};

static const rfc_proof rfc_consistency[] = {
    {2,
     8,
     2,
     {"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
    {6,
     8,
     3,
     {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
    {2,
     5,
     2,
     {"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
};

static void test_rfc6962_vectors(void)
{
    sdm_merkle_t *t = sdm_merkle_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    uint8_t root[H], want[H];
    CU_ASSERT_EQUAL(sdm_merkle_root(t, 0, root), 0);
    unhex(rfc_roots[0], want);
    CU_ASSERT_EQUAL(memcmp(root, want, H), 0);
    for (int i = 0; i < 8; i++) {
        uint8_t data[16], leaf[H];
        size_t len = strlen(rfc_data[i]) / 2;
        unhex(rfc_data[i], data);
        sdm_merkle_leaf_hash(data, len, leaf);
        CU_ASSERT_EQUAL_FATAL(sdm_merkle_append(t, leaf), 0);
        CU_ASSERT_EQUAL(sdm_merkle_root(t, (uint64_t)i + 1, root), 0);
        unhex(rfc_roots[i + 1], want);
        CU_ASSERT_EQUAL(memcmp(root, want, H), 0);
    }
    for (size_t v = 0; v < sizeof(rfc_inclusion) / sizeof(rfc_inclusion[0]); v++) {
        const rfc_proof *p = &rfc_inclusion[v];
        uint8_t path[64][H], want_path[3][H], leaf[H];
        size_t np;
        CU_ASSERT_EQUAL(sdm_merkle_inclusion(t, p->a, p->b, path, &np), 0);
        CU_ASSERT_EQUAL_FATAL(np, (size_t)p->n);
        for (int j = 0; j < p->n; j++)
            unhex(p->hashes[j], want_path[j]);
        CU_ASSERT_EQUAL(memcmp(path, want_path, np * H), 0);
        unhex(rfc_roots[p->b], root);
        CU_ASSERT_EQUAL(sdm_merkle_leaf(t, p->a, leaf), 0);
        CU_ASSERT_EQUAL(sdm_merkle_verify_inclusion(leaf, p->a, p->b, want_path, np, root), 0);
    }
    for (size_t v = 0; v < sizeof(rfc_consistency) / sizeof(rfc_consistency[0]); v++) {
        const rfc_proof *p = &rfc_consistency[v];
        uint8_t path[64][H], want_path[3][H], from_root[H];
        size_t np;
        CU_ASSERT_EQUAL(sdm_merkle_consistency(t, p->a, p->b, path, &np), 0);
        CU_ASSERT_EQUAL_FATAL(np, (size_t)p->n);
        for (int j = 0; j < p->n; j++)
            unhex(p->hashes[j], want_path[j]);
        CU_ASSERT_EQUAL(memcmp(path, want_path, np * H), 0);
        unhex(rfc_roots[p->a], from_root);
        unhex(rfc_roots[p->b], root);
        CU_ASSERT_EQUAL(sdm_merkle_verify_consistency(p->a, p->b, from_root, root, want_path, np),
                        0);
    }
    sdm_merkle_destroy(&t);
    CU_ASSERT_PTR_NULL(t);
    sdm_merkle_destroy(&t);
}

/* A tree that keeps growing: every earlier prefix keeps its root, proofs against old sizes
 * stay valid, and the level arrays grow many times over. */
static void test_many_appends(void)
{
    enum { N = 1500 };
    static uint8_t big[N][H];
    static uint8_t roots[N + 1][H];
    sdm_merkle_t *t = sdm_merkle_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    test_rng rng = {99};
    int failures = 0;
    ref_mth(big, 0, roots[0]);
    for (uint64_t i = 0; i < N; i++) {
        uint64_t x = test_rng_u64(&rng);
        ref_leaf((const uint8_t *)&x, sizeof(x), big[i]);
        CU_ASSERT_EQUAL_FATAL(sdm_merkle_append(t, big[i]), 0);
        if (sdm_merkle_root(t, i + 1, roots[i + 1]) != 0)
            failures++;
    }
    CU_ASSERT_EQUAL(sdm_merkle_size(t), N);
    /* roots taken while growing equal the plain recursion, and still come out the same */
    for (uint64_t n = 0; n <= N; n += 1 + n / 16) {
        uint8_t want[H], now[H];
        ref_mth(big, n, want);
        failures += memcmp(roots[n], want, H) != 0;
        failures += sdm_merkle_root(t, n, now) != 0 || memcmp(now, want, H) != 0;
    }
    for (int k = 0; k < 300; k++) {
        uint64_t to = 1 + test_rng_u64(&rng) % N;
        uint64_t from = 1 + test_rng_u64(&rng) % to;
        uint64_t i = test_rng_u64(&rng) % to;
        uint8_t path[64][H];
        size_t np;
        failures += sdm_merkle_inclusion(t, i, to, path, &np) != 0;
        failures += sdm_merkle_verify_inclusion(big[i], i, to, path, np, roots[to]) != 0;
        failures += sdm_merkle_consistency(t, from, to, path, &np) != 0;
        failures += sdm_merkle_verify_consistency(from, to, roots[from], roots[to], path, np) != 0;
    }
    CU_ASSERT_EQUAL(failures, 0);
    sdm_merkle_destroy(&t);
}

static int register_suites(void)
{
    CU_pSuite s = CU_add_suite("merkle", suite_setup, suite_teardown);
    if (!s)
        return -1;
    CU_add_test(s, "leaf and node hashes", test_hashes);
    CU_add_test(s, "roots of every size 0..256", test_roots_every_size);
    CU_add_test(s, "inclusion proofs, honest and tampered", test_inclusion_all);
    CU_add_test(s, "consistency proofs, honest and tampered", test_consistency_all);
    CU_add_test(s, "RFC 6962 test vectors", test_rfc6962_vectors);
    CU_add_test(s, "many appends", test_many_appends);
    return 0;
}

int main(int argc, char **argv)
{
    return test_main(argc, argv, register_suites);
}
