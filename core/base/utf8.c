#include "base/utf8.h"

#include <stdint.h>
#include <string.h>

#include "base/buf.h"

size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

int utf8_text(const char *s, size_t n, size_t *at)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = p[i] ? utf8_seq(p + i, n - i) : 0;
        if (!k) {
            if (at)
                *at = i;
            return 0;
        }
        i += k;
    }
    return 1;
}

char *utf8_printable(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    buf b;
    buf_init(&b);
    size_t run = 0; /* valid bytes not yet copied, ending at i */
    for (size_t i = 0; i < n;) {
        size_t k = p[i] ? utf8_seq(p + i, n - i) : 0;
        if (k) {
            i += k;
            run += k;
            continue;
        }
        buf_add(&b, s + i - run, run);
        buf_adds(&b, "\xef\xbf\xbd");
        run = 0;
        i++;
    }
    buf_add(&b, s + n - run, run);
    return buf_steal(&b);
}

void utf8_trim(char *s)
{
    size_t n = strlen(s), start = n;
    /* back to the lead byte of the last sequence (at most 3 back) */
    while (start > 0 && n - start < 4 && ((unsigned char)s[start - 1] & 0xc0) == 0x80)
        start--;
    if (start > 0 && (unsigned char)s[start - 1] >= 0x80) {
        start--;
        if (utf8_seq((const unsigned char *)s + start, n - start) != n - start)
            s[start] = '\0';
    }
}
