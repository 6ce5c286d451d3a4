/* Signed link tokens (delivery/linktoken) and the SHA-256 / HMAC they
 * rest on (base/sha256): published test vectors, then tokens forged,
 * altered, truncated, replayed for another purpose, expired. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "base/sha256.h"
#include "delivery/linktoken.h"

static void hex(const unsigned char *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
}

static void test_sha256_vectors(void **st)
{
    unsigned char d[SHA256_LEN];
    char h[65];
    sha256("", 0, d);
    hex(d, sizeof d, h);
    assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha256("abc", 3, d);
    hex(d, sizeof d, h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256(m, strlen(m), d);
    hex(d, sizeof d, h);
    assert_string_equal(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* a million 'a', fed in uneven pieces (block boundaries crossed) */
    sha256_ctx c;
    sha256_init(&c);
    char a[997];
    memset(a, 'a', sizeof a);
    size_t left = 1000000;
    while (left) {
        size_t k = left < sizeof a ? left : sizeof a;
        sha256_update(&c, a, k);
        left -= k;
    }
    sha256_final(&c, d);
    hex(d, sizeof d, h);
    assert_string_equal(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_hmac_rfc4231(void **st)
{
    unsigned char d[SHA256_LEN], key[131];
    char h[65];
    memset(key, 0x0b, 20);
    hmac_sha256(key, 20, "Hi There", 8, d);
    hex(d, sizeof d, h);
    assert_string_equal(h, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    const char *m2 = "what do ya want for nothing?";
    hmac_sha256("Jefe", 4, m2, strlen(m2), d);
    hex(d, sizeof d, h);
    assert_string_equal(h, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* a key longer than a block is hashed first (test case 6) */
    memset(key, 0xaa, sizeof key);
    const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    hmac_sha256(key, sizeof key, m6, strlen(m6), d);
    hex(d, sizeof d, h);
    assert_string_equal(h, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    assert_true(ct_equal("abc", "abc", 3));
    assert_false(ct_equal("abc", "abd", 3));
}

static const char *SECRET = "0123456789abcdef-link-secret";

static linktoken sample(void)
{
    linktoken t = {.purpose = LINK_UNSUBSCRIBE,
                   .profile = "p42",
                   .channel = "email",
                   .origin = "campaign",
                   .name = "winback",
                   .node = "mail_a",
                   .key = "c:winback:1:mail_a:p42",
                   .link = ""};
    return t;
}

static void make(const linktoken *t, const char *secret, buf *b)
{
    buf_reset(b);
    assert_int_equal(linktoken_make(t, secret, b), 0);
}

static void test_roundtrip(void **st)
{
    buf b;
    buf_init(&b);
    linktoken t = sample();
    make(&t, SECRET, &b);
    for (size_t i = 0; i < b.len; i++)
        assert_true(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.",
                           b.data[i]) != NULL);
    static linktoken_parsed p;
    assert_int_equal(linktoken_verify(b.data, b.len, SECRET, LINK_UNSUBSCRIBE, 1000, &p),
                     LINKTOKEN_OK);
    assert_string_equal(p.t.profile, "p42");
    assert_string_equal(p.t.channel, "email");
    assert_string_equal(p.t.origin, "campaign");
    assert_string_equal(p.t.name, "winback");
    assert_string_equal(p.t.node, "mail_a");
    assert_string_equal(p.t.key, "c:winback:1:mail_a:p42");
    assert_string_equal(p.t.link, "");
    assert_int_equal(p.t.expires, 0);
    /* a click token carries its URL, any length of fields */
    linktoken c = sample();
    c.purpose = LINK_CLICK;
    c.link = "https://shop.example.com/a?b=c&d=%20e#f";
    c.node = NULL;
    for (int len = 0; len < 6; len++) {
        char prof[8] = "abcdef";
        prof[len] = 0;
        c.profile = prof;
        make(&c, SECRET, &b);
        assert_int_equal(linktoken_verify(b.data, b.len, SECRET, LINK_CLICK, 0, &p), LINKTOKEN_OK);
        assert_string_equal(p.t.profile, prof);
        assert_string_equal(p.t.node, "");
        assert_string_equal(p.t.link, c.link);
    }
    buf_free(&b);
}

static void test_forged(void **st)
{
    buf b, f;
    buf_init(&b);
    buf_init(&f);
    linktoken t = sample();
    make(&t, SECRET, &b);
    static linktoken_parsed p;
    /* another secret (a forger's, or a rotated one) */
    assert_int_equal(
        linktoken_verify(b.data, b.len, "another-secret-of-16+", LINK_UNSUBSCRIBE, 0, &p),
        LINKTOKEN_BAD_SIGNATURE);
    /* the same fields for another profile, MAC kept from the genuine one */
    linktoken o = sample();
    o.profile = "p43";
    make(&o, "forger-guess-secret!", &f);
    const char *gdot = strchr(b.data, '.'), *fdot = strchr(f.data, '.');
    buf x;
    buf_init(&x);
    buf_add(&x, f.data, (size_t)(fdot - f.data));
    buf_adds(&x, gdot);
    assert_int_equal(linktoken_verify(x.data, x.len, SECRET, LINK_UNSUBSCRIBE, 0, &p),
                     LINKTOKEN_BAD_SIGNATURE);
    /* every single character changed, one at a time: never accepted */
    for (size_t i = 0; i < b.len; i++) {
        buf_reset(&x);
        buf_add(&x, b.data, b.len);
        x.data[i] = x.data[i] == 'A' ? 'B' : 'A';
        if (x.data[i] == b.data[i])
            continue;
        linktoken_rc rc = linktoken_verify(x.data, x.len, SECRET, LINK_UNSUBSCRIBE, 0, &p);
        assert_int_not_equal(rc, LINKTOKEN_OK);
    }
    /* the dot moved or doubled, garbage, empty, too long */
    assert_int_equal(linktoken_verify("", 0, SECRET, LINK_UNSUBSCRIBE, 0, &p), LINKTOKEN_MALFORMED);
    assert_int_equal(linktoken_verify("abc", 3, SECRET, LINK_UNSUBSCRIBE, 0, &p),
                     LINKTOKEN_MALFORMED);
    assert_int_equal(linktoken_verify("a.b.c", 5, SECRET, LINK_UNSUBSCRIBE, 0, &p),
                     LINKTOKEN_MALFORMED);
    assert_int_equal(linktoken_verify("%2e/../x", 8, SECRET, LINK_UNSUBSCRIBE, 0, &p),
                     LINKTOKEN_MALFORMED);
    char big[LINKTOKEN_MAX + 10];
    memset(big, 'A', sizeof big);
    assert_int_equal(linktoken_verify(big, sizeof big, SECRET, LINK_UNSUBSCRIBE, 0, &p),
                     LINKTOKEN_MALFORMED);
    buf_free(&x);
    buf_free(&f);
    buf_free(&b);
}

static void test_truncated(void **st)
{
    buf b;
    buf_init(&b);
    linktoken t = sample();
    make(&t, SECRET, &b);
    static linktoken_parsed p;
    for (size_t n = 0; n < b.len; n++)
        assert_int_not_equal(linktoken_verify(b.data, n, SECRET, LINK_UNSUBSCRIBE, 0, &p),
                             LINKTOKEN_OK);
    /* a prefix of the payload signed on its own is still refused: the
     * field count is part of the shape */
    buf_free(&b);
}

static void test_replayed_elsewhere_and_expiry(void **st)
{
    buf b;
    buf_init(&b);
    static linktoken_parsed p;
    linktoken o = sample();
    o.purpose = LINK_OPEN;
    make(&o, SECRET, &b);
    /* an open pixel's token does not unsubscribe, nor click */
    assert_int_equal(linktoken_verify(b.data, b.len, SECRET, LINK_UNSUBSCRIBE, 0, &p),
                     LINKTOKEN_WRONG_PURPOSE);
    assert_int_equal(linktoken_verify(b.data, b.len, SECRET, LINK_CLICK, 0, &p),
                     LINKTOKEN_WRONG_PURPOSE);
    assert_int_equal(linktoken_verify(b.data, b.len, SECRET, LINK_OPEN, 0, &p), LINKTOKEN_OK);
    linktoken e = sample();
    e.expires = 2000000000;
    make(&e, SECRET, &b);
    assert_int_equal(linktoken_verify(b.data, b.len, SECRET, LINK_UNSUBSCRIBE, 1999999999, &p),
                     LINKTOKEN_OK);
    assert_int_equal(p.t.expires, 2000000000);
    assert_int_equal(linktoken_verify(b.data, b.len, SECRET, LINK_UNSUBSCRIBE, 2000000000, &p),
                     LINKTOKEN_EXPIRED);
    /* fields that would smuggle a separator are refused at making */
    linktoken bad = sample();
    bad.profile = "p\x1f"
                  "42";
    size_t before = b.len;
    assert_int_equal(linktoken_make(&bad, SECRET, &b), -1);
    assert_int_equal(b.len, before);
    bad = sample();
    bad.link = "https://x/\n";
    assert_int_equal(linktoken_make(&bad, SECRET, &b), -1);
    assert_string_equal(linktoken_rc_name(LINKTOKEN_BAD_SIGNATURE), "bad signature");
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors), cmocka_unit_test(test_hmac_rfc4231),
        cmocka_unit_test(test_roundtrip),      cmocka_unit_test(test_forged),
        cmocka_unit_test(test_truncated),      cmocka_unit_test(test_replayed_elsewhere_and_expiry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
