/* Engagement tracking in html parts (delivery/tracking): which links are
 * rewritten to signed redirects and what each token says, which are
 * left alone, where the open pixel goes, and html that is cut short. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delivery/tracking.h"

#define SECRET "tracking-test-secret-0123456789"
#define BASE "https://t.example.test/mail"

static tracking_opts opts(int opens, int clicks)
{
    tracking_opts o = {.public_url = BASE,
                       .secret = SECRET,
                       .opens = opens,
                       .clicks = clicks,
                       .who = {.profile = "p1",
                               .channel = "email",
                               .origin = "campaign",
                               .name = "news",
                               .node = "m",
                               .key = "news/1/m/p1"}};
    return o;
}

static char *rewrite(const char *html, int opens, int clicks, int *n)
{
    tracking_opts o = opts(opens, clicks);
    buf b;
    buf_init(&b);
    *n = tracking_rewrite_html(html, &o, &b);
    return b.data ? buf_steal(&b) : strdup("");
}

/* The token of the i-th (from 0) occurrence of BASE + path in s, verified
 * for purpose into p. */
static void token_at(const char *s, const char *path, int i, char purpose, linktoken_parsed *p)
{
    char pre[256];
    snprintf(pre, sizeof pre, "%s%s", BASE, path);
    const char *at = s;
    for (int k = 0; k <= i; k++) {
        at = strstr(at, pre);
        assert_non_null(at);
        at += strlen(pre);
    }
    size_t n = strcspn(at, "\"");
    assert_int_equal(linktoken_verify(at, n, SECRET, purpose, 0, p), LINKTOKEN_OK);
}

static void test_links_rewritten_to_what_they_said(void **st)
{
    const char *html = "<p>Hi</p><a href=\"https://shop.example.com/sale?a=1&amp;b=2\">Sale</a>"
                       "<A class=x HREF='http://example.org/x#top'>X</A>"
                       "<a href=https://example.net/u>bare</a>";
    int n;
    char *out = rewrite(html, 0, 1, &n);
    assert_int_equal(n, 3);
    assert_null(strstr(out, "shop.example.com"));
    assert_null(strstr(out, "example.org"));
    static linktoken_parsed p;
    token_at(out, "/t/c/", 0, LINK_CLICK, &p);
    /* the URL as a browser reads the attribute: &amp; is & */
    assert_string_equal(p.t.link, "https://shop.example.com/sale?a=1&b=2");
    assert_string_equal(p.t.profile, "p1");
    assert_string_equal(p.t.key, "news/1/m/p1");
    assert_string_equal(p.t.node, "m");
    token_at(out, "/t/c/", 1, LINK_CLICK, &p);
    assert_string_equal(p.t.link, "http://example.org/x#top");
    token_at(out, "/t/c/", 2, LINK_CLICK, &p);
    assert_string_equal(p.t.link, "https://example.net/u");
    /* the rest of each tag is kept */
    assert_non_null(strstr(out, "<A class=x href=\"" BASE "/t/c/"));
    assert_non_null(strstr(out, ">Sale</a>"));
    /* a click token is no open token */
    char pre[] = BASE "/t/c/";
    const char *t = strstr(out, pre) + strlen(pre);
    assert_int_equal(linktoken_verify(t, strcspn(t, "\""), SECRET, LINK_OPEN, 0, &p),
                     LINKTOKEN_WRONG_PURPOSE);
    free(out);
}

static void test_links_left_alone(void **st)
{
    const char *html = "<a href=\"mailto:help@example.com\">m</a>"
                       "<a href=\"tel:+331\">t</a><a href=\"#top\">top</a>"
                       "<a href=\"" BASE "/u/abc\">unsubscribe</a>"
                       "<a data-notrack href=\"https://example.com/keep\">keep</a>"
                       "<!-- <a href=\"https://example.com/comment\">c</a> -->"
                       "<abbr href=\"https://example.com/abbr\">a</abbr>"
                       "<a name=\"x\">no href</a>"
                       "<a href=\"javascript:alert(1)\">js</a>";
    int n;
    char *out = rewrite(html, 0, 1, &n);
    assert_int_equal(n, 0);
    assert_string_equal(out, html);
    free(out);
    /* clicks off: links untouched */
    out = rewrite("<a href=\"https://example.com/\">x</a>", 1, 0, &n);
    assert_int_equal(n, 0);
    assert_non_null(strstr(out, "<a href=\"https://example.com/\">x</a>"));
    free(out);
}

static void test_pixel_before_body_end(void **st)
{
    int n;
    char *out = rewrite("<html><body><p>x</p></BODY></html>", 1, 0, &n);
    const char *img = strstr(out, "<img src=\"" BASE "/t/o/");
    assert_non_null(img);
    assert_true(img < strstr(out, "</BODY>"));
    assert_non_null(strstr(out, "width=\"1\" height=\"1\" alt=\"\""));
    static linktoken_parsed p;
    token_at(out, "/t/o/", 0, LINK_OPEN, &p);
    assert_string_equal(p.t.key, "news/1/m/p1");
    assert_string_equal(p.t.link, "");
    free(out);
    /* no </body>: at the end; exactly one pixel either way */
    out = rewrite("<p>fragment</p>", 1, 1, &n);
    img = strstr(out, "<img src=\"" BASE "/t/o/");
    assert_non_null(img);
    assert_string_equal(img + strcspn(img, ">") + 1, "");
    assert_null(strstr(img + 1, "<img"));
    free(out);
}

static void test_cut_short_html_is_kept(void **st)
{
    const char *cut[] = {"<a href=\"https://example.com/", "<a href='x", "<a ", "<!-- open",
                         "<a href=https://e.com/ x"};
    for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) {
        int n;
        char *out = rewrite(cut[i], 0, 1, &n);
        assert_int_equal(n, 0);
        assert_string_equal(out, cut[i]);
        free(out);
    }
}

static void test_a_link_too_long_for_a_token_is_kept(void **st)
{
    size_t len = LINKTOKEN_MAX + 100;
    char *html = malloc(len + 64);
    int k = snprintf(html, len + 64, "<a href=\"https://example.com/");
    memset(html + k, 'x', len);
    snprintf(html + k + len, 64, "\">long</a>");
    int n;
    char *out = rewrite(html, 0, 1, &n);
    assert_int_equal(n, 0);
    assert_string_equal(out, html);
    free(out);
    free(html);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_links_rewritten_to_what_they_said),
        cmocka_unit_test(test_links_left_alone),
        cmocka_unit_test(test_pixel_before_body_end),
        cmocka_unit_test(test_cut_short_html_is_kept),
        cmocka_unit_test(test_a_link_too_long_for_a_token_is_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
