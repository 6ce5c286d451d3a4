#include "lang/text.h"

#include <string.h>

size_t text_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

uint32_t text_case_cp(uint32_t c, int upper)
{
    if (!upper) {
        if (c >= 'A' && c <= 'Z')
            return c + 32;
        if (c >= 0xC0 && c <= 0xDE && c != 0xD7)
            return c + 0x20;
        if (c == 0x178)
            return 0xFF;
        if (((c >= 0x100 && c <= 0x12F) || (c >= 0x132 && c <= 0x137) ||
             (c >= 0x14A && c <= 0x177)) &&
            c % 2 == 0)
            return c + 1;
        if (((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) && c % 2 == 1)
            return c + 1;
        return c;
    }
    if (c >= 'a' && c <= 'z')
        return c - 32;
    if (c >= 0xE0 && c <= 0xFE && c != 0xF7)
        return c - 0x20;
    if (c == 0xFF)
        return 0x178;
    if (((c >= 0x101 && c <= 0x12F) || (c >= 0x133 && c <= 0x137) || (c >= 0x14B && c <= 0x177)) &&
        c % 2 == 1)
        return c - 1;
    if (((c >= 0x13A && c <= 0x148) || (c >= 0x17A && c <= 0x17E)) && c % 2 == 0)
        return c - 1;
    return c;
}

size_t text_case(const char *s, size_t len, char *out, int upper)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned char b = p[i];
        if (b < 0x80) {
            out[i] = (char)text_case_cp(b, upper);
            i++;
            continue;
        }
        /* two-byte sequences hold every mapped letter; the rest is copied */
        if ((b & 0xE0) == 0xC0 && i + 1 < len && (p[i + 1] & 0xC0) == 0x80) {
            uint32_t cp = ((uint32_t)(b & 0x1F) << 6) | (p[i + 1] & 0x3F);
            uint32_t m = cp >= 0x80 ? text_case_cp(cp, upper) : cp;
            if (m != cp) {
                out[i] = (char)(0xC0 | (m >> 6));
                out[i + 1] = (char)(0x80 | (m & 0x3F));
            } else {
                out[i] = (char)b;
                out[i + 1] = (char)p[i + 1];
            }
            i += 2;
            continue;
        }
        out[i] = (char)b;
        i++;
    }
    return len;
}
