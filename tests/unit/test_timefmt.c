/* Durations, dates and timestamps: the formats users write in every file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <time.h>

#include "base/timefmt.h"

static void test_durations(void **st)
{
    int64_t ms;
    assert_int_equal(duration_parse_ms("90s", &ms), 0);
    assert_int_equal(ms, 90000);
    assert_int_equal(duration_parse_ms("15m", &ms), 0);
    assert_int_equal(ms, 900000);
    assert_int_equal(duration_parse_ms("12h", &ms), 0);
    assert_int_equal(ms, 12 * 3600000LL);
    assert_int_equal(duration_parse_ms("7d", &ms), 0);
    assert_int_equal(ms, 7 * 86400000LL);
    assert_int_equal(duration_parse_ms("2w", &ms), 0);
    assert_int_equal(ms, 14 * 86400000LL);
    assert_int_equal(duration_parse_ms("250ms", &ms), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(duration_parse_ms("1h30m", &ms), 0);
    assert_int_equal(ms, 5400000);
    const char *bad[] = {
        "", "s", "10", "10x", "-5s", "1.5h", " 5s", "5s ", "99999999999999999999s"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(duration_parse_ms(bad[i], &ms), -1);
    char out[32];
    duration_format(90, out, sizeof out);
    assert_string_equal(out, "90s");
    duration_format(7 * 86400, out, sizeof out);
    assert_string_equal(out, "1w");
    duration_format(3 * 86400, out, sizeof out);
    assert_string_equal(out, "3d");
    duration_format(-3600, out, sizeof out);
    assert_string_equal(out, "-1h");
    duration_format(0, out, sizeof out);
    assert_string_equal(out, "0s");
}

static void test_civil_roundtrip(void **st)
{
    assert_int_equal(days_from_civil(1970, 1, 1), 0);
    assert_int_equal(days_from_civil(2000, 3, 1), 11017);
    assert_int_equal(days_from_civil(1969, 12, 31), -1);
    for (int64_t d = -800000; d < 800000; d += 997) {
        int64_t y;
        unsigned m, dd;
        civil_from_days(d, &y, &m, &dd);
        assert_int_equal(days_from_civil(y, m, dd), d);
    }
}

static void test_dates(void **st)
{
    int64_t d;
    assert_int_equal(date_parse("2026-01-31", 10, &d), 0);
    char out[11];
    date_format(d, out);
    assert_string_equal(out, "2026-01-31");
    assert_int_equal(date_parse("2024-02-29", 10, &d), 0);
    assert_int_equal(date_parse("2026-02-29", 10, &d), -1);
    assert_int_equal(date_parse("2026-13-01", 10, &d), -1);
    assert_int_equal(date_parse("2026-1-01", 9, &d), -1);
    assert_int_equal(date_parse("2026/01/01", 10, &d), -1);
}

/* Formatting agrees with the C library's gmtime and strftime, second for
 * second, from 1900 to 2200 (and both sides of the epoch). */
static void test_format_matches_gmtime(void **st)
{
    for (int64_t t = -2208988800LL; t < 7258118400LL; t += 86399 * 7 + 3607) {
        time_t tt = (time_t)t;
        struct tm tm;
        gmtime_r(&tt, &tm);
        char want[32], got[21], day[11];
        strftime(want, sizeof want, "%Y-%m-%dT%H:%M:%SZ", &tm);
        timestamp_format(t, got);
        assert_string_equal(got, want);
        date_format(floor_div(t, 86400), day);
        assert_memory_equal(day, want, 10);
        assert_int_equal(day[10], 0);
    }
}

static void test_timestamps(void **st)
{
    int64_t t;
    const char *s = "2026-11-23T10:00:00Z";
    assert_int_equal(timestamp_parse(s, strlen(s), &t), 0);
    assert_int_equal(t, 1795428000);
    char out[21];
    timestamp_format(t, out);
    assert_string_equal(out, s);
    s = "2026-11-23T11:00:00+01:00";
    assert_int_equal(timestamp_parse(s, strlen(s), &t), 0);
    assert_int_equal(t, 1795428000);
    s = "2026-11-23T10:00:00.123Z";
    assert_int_equal(timestamp_parse(s, strlen(s), &t), 0);
    assert_int_equal(t, 1795428000);
    s = "2026-11-23 10:00";
    assert_int_equal(timestamp_parse(s, strlen(s), &t), 0);
    assert_int_equal(t, 1795428000);
    s = "2026-11-23";
    assert_int_equal(timestamp_parse(s, strlen(s), &t), 0);
    assert_int_equal(t, 1795392000);
    timestamp_format(-1, out);
    assert_string_equal(out, "1969-12-31T23:59:59Z");
    const char *bad[] = {"2026-11-23T25:00:00Z",
                         "2026-11-23T10:00:00Q",
                         "2026-11-23T10",
                         "2026-11-23T10:00:00+1:00",
                         "yesterday",
                         "2026-11-23T10:00:00.Z"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(timestamp_parse(bad[i], strlen(bad[i]), &t), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_civil_roundtrip),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_timestamps),
        cmocka_unit_test(test_format_matches_gmtime),
    };
    return cmocka_run_group_tests_name("timefmt", tests, NULL, NULL);
}
