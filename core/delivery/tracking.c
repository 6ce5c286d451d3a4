#include "delivery/tracking.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/mem.h"

static void attr_escape(buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': buf_adds(b, "&amp;"); break;
        case '"': buf_adds(b, "&quot;"); break;
        case '<': buf_adds(b, "&lt;"); break;
        case '>': buf_adds(b, "&gt;"); break;
        default: buf_addc(b, *s);
        }
    }
}

/* An attribute value as the browser reads it: the character references
 * a URL may hold decoded (&amp; &#38; &#x26; and the other few named
 * ones); anything else is kept as written. A new string. */
static char *attr_decode(const char *s, size_t n)
{
    static const struct {
        const char *name;
        char c;
    } named[] = {{"amp;", '&'}, {"lt;", '<'}, {"gt;", '>'}, {"quot;", '"'}, {"apos;", '\''}};
    buf b;
    buf_init(&b);
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '&') {
            buf_addc(&b, s[i]);
            continue;
        }
        size_t k = 0;
        for (; k < sizeof named / sizeof named[0]; k++) {
            size_t l = strlen(named[k].name);
            if (i + 1 + l <= n && !strncasecmp(s + i + 1, named[k].name, l)) {
                buf_addc(&b, named[k].c);
                i += l;
                break;
            }
        }
        if (k < sizeof named / sizeof named[0])
            continue;
        if (i + 2 < n && s[i + 1] == '#') {
            int hex = s[i + 2] == 'x' || s[i + 2] == 'X';
            size_t j = i + 2 + hex;
            unsigned long v = 0;
            size_t digits = 0;
            while (j < n && digits < 7 &&
                   (hex ? isxdigit((unsigned char)s[j]) : isdigit((unsigned char)s[j]))) {
                v = v * (hex ? 16 : 10) +
                    (unsigned long)(isdigit((unsigned char)s[j])
                                        ? s[j] - '0'
                                        : (tolower((unsigned char)s[j]) - 'a' + 10));
                j++;
                digits++;
            }
            /* printable ASCII only: a URL written with references to
             * anything else is left as written (and not rewritten) */
            if (digits && j < n && s[j] == ';' && v >= 0x20 && v < 0x7f) {
                buf_addc(&b, (char)v);
                i = j;
                continue;
            }
        }
        buf_addc(&b, '&');
    }
    return buf_steal(&b) ?: xstrdup("");
}

/* 1 when url is http(s) and not under public_url (our own links). */
static int trackable(const char *url, const char *public_url)
{
    if (strncasecmp(url, "http://", 7) && strncasecmp(url, "https://", 8))
        return 0;
    for (const char *c = url; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return 0;
    size_t pl = strlen(public_url);
    if (!strncasecmp(url, public_url, pl) && (url[pl] == '/' || url[pl] == 0))
        return 0;
    return 1;
}

static const char *find_ci(const char *s, const char *what)
{
    size_t n = strlen(what);
    for (; *s; s++)
        if (!strncasecmp(s, what, n))
            return s;
    return NULL;
}

/* The last "</body" of html, or NULL. */
static const char *body_close(const char *html)
{
    const char *last = NULL;
    for (const char *p = html; (p = find_ci(p, "</body"));)
        last = p++;
    return last;
}

static void add_link(buf *out, const tracking_opts *o, const char *path, const linktoken *t,
                     int *ok)
{
    buf tok;
    buf_init(&tok);
    *ok = linktoken_make(t, o->secret, &tok) == 0;
    if (*ok) {
        attr_escape(out, o->public_url);
        buf_adds(out, path);
        buf_add(out, tok.data, tok.len);
    }
    buf_free(&tok);
}

static void add_pixel(buf *out, const tracking_opts *o)
{
    linktoken t = o->who;
    t.purpose = LINK_OPEN;
    t.link = NULL;
    buf img;
    buf_init(&img);
    int ok;
    add_link(&img, o, "/t/o/", &t, &ok);
    if (ok) {
        buf_adds(out, "<img src=\"");
        buf_add(out, img.data, img.len);
        buf_adds(out, "\" width=\"1\" height=\"1\" alt=\"\" "
                      "style=\"display:block;border:0;width:1px;height:1px\">");
    }
    buf_free(&img);
}

/* At p, "<a" then a space: one <a ...> tag. Copies it to out, its href
 * rewritten when it should be; returns where the tag ends (after '>'),
 * or NULL when it never closes (the caller copies the rest as it is). */
static const char *anchor(const char *p, const tracking_opts *o, buf *out, int *rewritten)
{
    const char *q = p + 2;
    const char *href_at = NULL, *href_end = NULL, *val = NULL;
    size_t vlen = 0;
    int notrack = 0;
    for (;;) {
        while (isspace((unsigned char)*q) || *q == '/')
            q++;
        if (!*q)
            return NULL;
        if (*q == '>')
            break;
        const char *name = q;
        while (*q && !isspace((unsigned char)*q) && *q != '=' && *q != '>' && *q != '/')
            q++;
        size_t nlen = (size_t)(q - name);
        while (isspace((unsigned char)*q))
            q++;
        const char *v = NULL;
        size_t vl = 0;
        if (*q == '=') {
            q++;
            while (isspace((unsigned char)*q))
                q++;
            if (*q == '"' || *q == '\'') {
                char quote = *q++;
                v = q;
                while (*q && *q != quote)
                    q++;
                if (!*q)
                    return NULL;
                vl = (size_t)(q - v);
                q++;
            } else {
                v = q;
                while (*q && !isspace((unsigned char)*q) && *q != '>')
                    q++;
                vl = (size_t)(q - v);
            }
        }
        if (nlen == 4 && !strncasecmp(name, "href", 4) && !href_at) {
            href_at = name;
            href_end = q;
            val = v;
            vlen = vl;
        } else if (nlen == 12 && !strncasecmp(name, "data-notrack", 12)) {
            notrack = 1;
        }
    }
    const char *end = q + 1; /* after '>' */
    if (href_at && val && !notrack) {
        char *url = attr_decode(val, vlen);
        char *u = url;
        while (isspace((unsigned char)*u))
            u++;
        size_t ul = strlen(u);
        while (ul && isspace((unsigned char)u[ul - 1]))
            u[--ul] = 0;
        if (trackable(u, o->public_url)) {
            linktoken t = o->who;
            t.purpose = LINK_CLICK;
            t.link = u;
            buf link;
            buf_init(&link);
            int ok;
            add_link(&link, o, "/t/c/", &t, &ok);
            if (ok) {
                buf_add(out, p, (size_t)(href_at - p));
                buf_adds(out, "href=\"");
                buf_add(out, link.data, link.len);
                buf_addc(out, '"');
                buf_add(out, href_end, (size_t)(end - href_end));
                (*rewritten)++;
                buf_free(&link);
                free(url);
                return end;
            }
            buf_free(&link);
        }
        free(url);
    }
    buf_add(out, p, (size_t)(end - p));
    return end;
}

int tracking_rewrite_html(const char *html, const tracking_opts *o, buf *out)
{
    int n = 0;
    const char *close = o->opens ? body_close(html) : NULL;
    const char *p = html;
    while (*p) {
        if (close && p == close) {
            add_pixel(out, o);
            close = NULL;
        }
        if (!strncmp(p, "<!--", 4)) {
            const char *e = strstr(p + 4, "-->");
            size_t len = e ? (size_t)(e + 3 - p) : strlen(p);
            buf_add(out, p, len);
            p += len;
            continue;
        }
        if (o->clicks && p[0] == '<' && (p[1] == 'a' || p[1] == 'A') &&
            isspace((unsigned char)p[2])) {
            const char *e = anchor(p, o, out, &n);
            if (!e) {
                buf_adds(out, p);
                break;
            }
            p = e;
            continue;
        }
        buf_addc(out, *p++);
    }
    if (o->opens && (close || !body_close(html)))
        add_pixel(out, o); /* no </body> (or it sat in a tag cut short) */
    return n;
}
