#include "base/timefmt.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

int duration_parse_ms(const char *s, int64_t *ms)
{
    int64_t total = 0;
    int terms = 0;
    if (!s)
        return -1;
    while (*s) {
        if (!isdigit((unsigned char)*s))
            return -1;
        int64_t n = 0;
        while (isdigit((unsigned char)*s)) {
            if (n > (INT64_MAX / 10) - 10)
                return -1;
            n = n * 10 + (*s++ - '0');
        }
        int64_t unit;
        if (s[0] == 'm' && s[1] == 's') {
            unit = 1;
            s += 2;
        } else {
            switch (*s) {
            case 's': unit = 1000; break;
            case 'm': unit = 60 * 1000; break;
            case 'h': unit = 3600 * 1000; break;
            case 'd': unit = 86400 * 1000LL; break;
            case 'w': unit = 7 * 86400 * 1000LL; break;
            default: return -1;
            }
            s++;
        }
        if (n > INT64_MAX / unit || total > INT64_MAX - n * unit)
            return -1;
        total += n * unit;
        terms++;
    }
    if (!terms)
        return -1;
    *ms = total;
    return 0;
}

void duration_format(int64_t seconds, char *out, size_t outlen)
{
    static const struct {
        int64_t secs;
        char unit;
    } units[] = {{7 * 86400, 'w'}, {86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}};
    const char *sign = seconds < 0 ? "-" : "";
    int64_t a = seconds < 0 ? -seconds : seconds;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (a != 0 && a % units[i].secs == 0) {
            snprintf(out, outlen, "%s%lld%c", sign, (long long)(a / units[i].secs), units[i].unit);
            return;
        }
    }
    snprintf(out, outlen, "0s");
}

/* Howard Hinnant's civil calendar algorithms (public domain). */
int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = floor_div(y, 400);
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = floor_div(z, 146097);
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static int days_in_month(int y, int m)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dm[m - 1];
}

int date_parse(const char *s, size_t len, int64_t *days)
{
    int y, m, d;
    if (len != 10 || s[4] != '-' || s[7] != '-' || digits(s, 4, &y) || digits(s + 5, 2, &m) ||
        digits(s + 8, 2, &d))
        return -1;
    if (m < 1 || m > 12 || d < 1 || d > days_in_month(y, m))
        return -1;
    *days = days_from_civil(y, (unsigned)m, (unsigned)d);
    return 0;
}

int timestamp_parse(const char *s, size_t len, int64_t *secs)
{
    int64_t days;
    if (len < 10 || date_parse(s, 10, &days))
        return -1;
    if (len == 10) {
        *secs = days * 86400;
        return 0;
    }
    int hh, mm, ss = 0;
    if ((s[10] != 'T' && s[10] != 't' && s[10] != ' ') || len < 16 || digits(s + 11, 2, &hh) ||
        s[13] != ':' || digits(s + 14, 2, &mm))
        return -1;
    size_t i = 16;
    if (i < len && s[i] == ':') {
        if (i + 3 > len || digits(s + i + 1, 2, &ss))
            return -1;
        i += 3;
        if (i < len && (s[i] == '.' || s[i] == ',')) {
            i++;
            size_t start = i;
            while (i < len && isdigit((unsigned char)s[i]))
                i++;
            if (i == start)
                return -1;
        }
    }
    if (hh > 23 || mm > 59 || ss > 60)
        return -1;
    int64_t offset = 0;
    if (i == len) {
        /* no zone: UTC, as stored by source_sqlite */
    } else if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == len) {
    } else if ((s[i] == '+' || s[i] == '-') && i + 6 == len && s[i + 3] == ':') {
        int oh, om;
        if (digits(s + i + 1, 2, &oh) || digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
            return -1;
        offset = (oh * 3600 + om * 60) * (s[i] == '+' ? 1 : -1);
    } else {
        return -1;
    }
    *secs = days * 86400 + hh * 3600 + mm * 60 + ss - offset;
    return 0;
}

/* n as `width` decimal digits (its last ones), without printf's ~1,800
 * instructions a call: every event and message formats its time. */
static void put_digits(char *out, unsigned n, int width)
{
    for (int i = width - 1; i >= 0; i--, n /= 10)
        out[i] = (char)('0' + n % 10);
}

void date_format(int64_t days, char out[11])
{
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    put_digits(out, (unsigned)((y % 10000 + 10000) % 10000), 4);
    out[4] = '-';
    put_digits(out + 5, m, 2);
    out[7] = '-';
    put_digits(out + 8, d, 2);
    out[10] = '\0';
}

void timestamp_format(int64_t secs, char out[21])
{
    int64_t days = floor_div(secs, 86400);
    int64_t rem = secs - days * 86400;
    date_format(days, out);
    out[10] = 'T';
    put_digits(out + 11, (unsigned)(rem / 3600), 2);
    out[13] = ':';
    put_digits(out + 14, (unsigned)(rem / 60 % 60), 2);
    out[16] = ':';
    put_digits(out + 17, (unsigned)(rem % 60), 2);
    out[19] = 'Z';
    out[20] = '\0';
}
