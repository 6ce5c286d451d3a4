/* Campaign schedules: slots keep their wall-clock time across DST, and
 * after downtime the missed slots are counted (one catch-up, no burst). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <string.h>

#include "campaign/schedule.h"
#include "base/timefmt.h"

static int64_t ts(const char *s)
{
    int64_t t;
    assert_int_equal(timestamp_parse(s, strlen(s), &t), 0);
    return t;
}

static void test_daily_keeps_local_time_across_dst(void **st)
{
    campaign c;
    memset(&c, 0, sizeof c);
    c.has_schedule = 1;
    c.at = ts("2026-03-28T09:00:00Z"); /* 10:00 in Paris, winter time */
    c.repeat_s = 86400;
    c.timezone = "Europe/Paris";
    int64_t missed;
    /* after the switch to summer time, 10:00 in Paris is 08:00Z */
    assert_int_equal(schedule_due_slot(&c, ts("2026-03-29T08:30:00Z"), c.at, &missed),
                     ts("2026-03-29T08:00:00Z"));
    assert_int_equal(missed, 1);
    assert_int_equal(schedule_due_slot(&c, ts("2026-03-29T07:59:00Z"), c.at, &missed), c.at);
    assert_int_equal(missed, 0);
    /* without a timezone, plain UTC arithmetic */
    c.timezone = NULL;
    assert_int_equal(schedule_due_slot(&c, ts("2026-03-29T08:30:00Z"), c.at, &missed), c.at);
}

static void test_missed_slots_after_downtime(void **st)
{
    campaign c;
    memset(&c, 0, sizeof c);
    c.has_schedule = 1;
    c.at = ts("2026-12-01T09:00:00Z");
    c.repeat_s = 3600;
    int64_t missed;
    /* down from 09:30 to 14:10: slots 10:00 .. 14:00 were missed; one run */
    int64_t due = schedule_due_slot(&c, ts("2026-12-01T14:10:00Z"), c.at, &missed);
    assert_int_equal(due, ts("2026-12-01T14:00:00Z"));
    assert_int_equal(missed, 5);
    /* never ran: everything since `at` counts */
    schedule_due_slot(&c, ts("2026-12-01T11:00:00Z"), 0, &missed);
    assert_int_equal(missed, 3);
    /* not yet due */
    assert_int_equal(schedule_due_slot(&c, ts("2026-11-30T00:00:00Z"), 0, &missed), -1);
    /* once, no repeat */
    c.repeat_s = 0;
    assert_int_equal(schedule_due_slot(&c, ts("2026-12-02T00:00:00Z"), 0, &missed), c.at);
    assert_int_equal(missed, 1);
    schedule_due_slot(&c, ts("2026-12-02T00:00:00Z"), c.at, &missed);
    assert_int_equal(missed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_daily_keeps_local_time_across_dst),
        cmocka_unit_test(test_missed_slots_after_downtime),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
