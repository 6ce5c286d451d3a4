/* timefmt — durations ("90s", "15m", "12h", "7d", "2w", "250ms") and
 * ISO 8601 dates and timestamps, in UTC, without the C library's locale
 * or time zone state. */
#ifndef BATON_TIMEFMT_H
#define BATON_TIMEFMT_H

#include <stddef.h>
#include <stdint.h>

/* A duration in milliseconds. Accepts one or more <int><unit> terms
 * ("1h30m"); units ms s m h d w. Returns 0, or -1 when malformed. */
int duration_parse_ms(const char *s, int64_t *ms);
/* Format seconds as the shortest exact form: "90s", "15m", "7d". */
void duration_format(int64_t seconds, char *out, size_t outlen);

/* Days since 1970-01-01 for a civil date, and back. */
int64_t days_from_civil(int64_t y, unsigned m, unsigned d);
void civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);

/* "YYYY-MM-DD" → days since epoch. 0 or -1. */
int date_parse(const char *s, size_t len, int64_t *days);
/* "YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)" (also a space for T, and a bare
 * date as midnight UTC) → seconds since epoch, UTC. 0 or -1. */
int timestamp_parse(const char *s, size_t len, int64_t *secs);
/* Writes "YYYY-MM-DD" (11 bytes with NUL) and "YYYY-MM-DDTHH:MM:SSZ"
 * (21 bytes with NUL). */
void date_format(int64_t days, char out[11]);
void timestamp_format(int64_t secs, char out[21]);

/* Floor division, the way time arithmetic needs it for negative values. */
static inline int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return q;
}

#endif
