#include "base/escape.h"

#include <string.h>

static const char hex[] = "0123456789ABCDEF";

static int unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static void pct(buf *b, unsigned char c)
{
    char e[3] = {'%', hex[c >> 4], hex[c & 15]};
    buf_add(b, e, 3);
}

static void url_like(buf *b, const char *s, size_t n, int form)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c))
            continue;
        buf_add(b, s + run, i - run);
        run = i + 1;
        if (form && c == ' ')
            buf_addc(b, '+');
        else
            pct(b, c);
    }
    buf_add(b, s + run, n - run);
}

void esc_url(buf *b, const char *s, size_t n)
{
    url_like(b, s, n, 0);
}

void esc_form(buf *b, const char *s, size_t n)
{
    url_like(b, s, n, 1);
}

void esc_json_inner(buf *b, const char *s, size_t n)
{
    size_t at = b->len;
    buf_add_json_string(b, s, n);
    /* drop the quotes buf_add_json_string put around it */
    memmove(b->data + at, b->data + at + 1, b->len - at - 2);
    b->len -= 2;
    b->data[b->len] = '\0';
}

void esc_header(buf *b, const char *s, size_t n, int url_list)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int drop = c < 0x20 || c == 0x7f || (url_list && (c == '<' || c == '>' || c == ','));
        if (!drop)
            continue;
        buf_add(b, s + run, i - run);
        run = i + 1;
        if (c == '\t')
            buf_addc(b, ' ');
    }
    buf_add(b, s + run, n - run);
}

void esc_topic(buf *b, const char *s, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != 0x7f && c != '/' && c != '+' && c != '#' && c != '%')
            continue;
        buf_add(b, s + run, i - run);
        run = i + 1;
        pct(b, c);
    }
    buf_add(b, s + run, n - run);
}
