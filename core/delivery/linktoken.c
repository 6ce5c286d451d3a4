/* delivery/linktoken — see linktoken.h. */
#include "delivery/linktoken.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sha256.h"

#define MAC_LEN 16
#define SEP '\x1f'

static const char b64u[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void add_b64url(buf *b, const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < len ? (unsigned)p[i + 1] << 8 : 0) |
                     (i + 2 < len ? p[i + 2] : 0);
        buf_addc(b, b64u[v >> 18 & 63]);
        buf_addc(b, b64u[v >> 12 & 63]);
        if (i + 1 < len)
            buf_addc(b, b64u[v >> 6 & 63]);
        if (i + 2 < len)
            buf_addc(b, b64u[v & 63]);
    }
}

static int b64u_val(char c)
{
    const char *p = c ? strchr(b64u, c) : NULL;
    return p ? (int)(p - b64u) : -1;
}

/* Unpadded base64url s[0..len) into out (room for len*3/4); -1 when it
 * is not canonical (a length of 1 mod 4, stray bits in the last char). */
static long from_b64url(const char *s, size_t len, unsigned char *out)
{
    if (len % 4 == 1)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < len; i += 4) {
        size_t k = len - i < 4 ? len - i : 4;
        unsigned v = 0;
        for (size_t j = 0; j < 4; j++) {
            int c = j < k ? b64u_val(s[i + j]) : 0;
            if (c < 0)
                return -1;
            v = v << 6 | (unsigned)c;
        }
        out[n++] = (unsigned char)(v >> 16);
        if (k > 2)
            out[n++] = (unsigned char)(v >> 8);
        if (k > 3)
            out[n++] = (unsigned char)v;
        /* bits past the last byte must be 0: one encoding per token */
        if ((k == 2 && (v & 0xffff)) || (k == 3 && (v & 0xff)))
            return -1;
    }
    return (long)n;
}

static int clean(const char *s)
{
    for (; s && *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

int linktoken_make(const linktoken *t, const char *secret, buf *out)
{
    const char *f[] = {t->profile, t->channel, t->origin, t->name, t->node, t->key, t->link};
    buf p;
    buf_init(&p);
    buf_addc(&p, '1');
    buf_addc(&p, SEP);
    buf_addc(&p, t->purpose);
    int ok = (unsigned char)t->purpose > 0x20 && t->purpose != 0x7f;
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
        ok &= clean(f[i]);
        buf_addc(&p, SEP);
        buf_adds(&p, f[i] ? f[i] : "");
    }
    buf_addc(&p, SEP);
    if (t->expires)
        buf_addf(&p, "%lld", (long long)t->expires);
    /* base64 grows by 4/3, plus the dot and the MAC */
    if (!ok || (p.len + 2) / 3 * 4 + 1 + 22 > LINKTOKEN_MAX) {
        buf_free(&p);
        return -1;
    }
    unsigned char mac[SHA256_LEN];
    hmac_sha256(secret, strlen(secret), p.data, p.len, mac);
    add_b64url(out, (const unsigned char *)p.data, p.len);
    buf_addc(out, '.');
    add_b64url(out, mac, MAC_LEN);
    buf_free(&p);
    return 0;
}

linktoken_rc linktoken_verify(const char *tok, size_t len, const char *secret, char purpose,
                              int64_t now, linktoken_parsed *out)
{
    if (!tok || len == 0 || len >= LINKTOKEN_MAX)
        return LINKTOKEN_MALFORMED;
    const char *dot = memchr(tok, '.', len);
    if (!dot)
        return LINKTOKEN_MALFORMED;
    size_t plen = (size_t)(dot - tok), mlen = len - plen - 1;
    unsigned char mac[MAC_LEN + 3];
    if (mlen != 22 || from_b64url(dot + 1, mlen, mac) != MAC_LEN)
        return LINKTOKEN_MALFORMED;
    long n = from_b64url(tok, plen, (unsigned char *)out->data);
    if (n < 2)
        return LINKTOKEN_MALFORMED;
    unsigned char want[SHA256_LEN];
    hmac_sha256(secret, strlen(secret), out->data, (size_t)n, want);
    if (!ct_equal(want, mac, MAC_LEN))
        return LINKTOKEN_BAD_SIGNATURE;
    /* signed by us: the fields are as linktoken_make wrote them */
    out->data[n] = '\0';
    char *fields[10];
    size_t nf = 0;
    for (char *p = out->data;;) {
        if (nf == 10)
            return LINKTOKEN_MALFORMED;
        fields[nf++] = p;
        char *s = strchr(p, SEP);
        if (!s)
            break;
        *s = '\0';
        p = s + 1;
    }
    if (nf != 10 || strcmp(fields[0], "1") != 0 || strlen(fields[1]) != 1)
        return LINKTOKEN_MALFORMED;
    linktoken *t = &out->t;
    t->purpose = fields[1][0];
    t->profile = fields[2];
    t->channel = fields[3];
    t->origin = fields[4];
    t->name = fields[5];
    t->node = fields[6];
    t->key = fields[7];
    t->link = fields[8];
    t->expires = *fields[9] ? strtoll(fields[9], NULL, 10) : 0;
    if (t->purpose != purpose)
        return LINKTOKEN_WRONG_PURPOSE;
    if (t->expires && now >= t->expires)
        return LINKTOKEN_EXPIRED;
    return LINKTOKEN_OK;
}

const char *linktoken_rc_name(linktoken_rc rc)
{
    switch (rc) {
    case LINKTOKEN_OK: return "ok";
    case LINKTOKEN_MALFORMED: return "malformed token";
    case LINKTOKEN_BAD_SIGNATURE: return "bad signature";
    case LINKTOKEN_WRONG_PURPOSE: return "a token for another kind of link";
    case LINKTOKEN_EXPIRED: return "expired";
    }
    return "?";
}
