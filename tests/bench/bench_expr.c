/* Evaluations per second of a typical journey condition and renders per
 * second of a 2 KB email body with 10 placeholders, on one core. Prints
 * the figures and their ratio to the targets (5M evaluations/s, 500k
 * renders/s); never fails on a figure. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "lang/expr.h"
#include "base/record.h"
#include "support/expr_fixture.h"
#include "lang/template.h"
#include "base/timefmt.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The journey engine's side: values by slot, resolved once at compile. */
typedef struct bench_ctx {
    baton_value by_slot[8];
} bench_ctx;

static int slot_get(void *ud, const void *row, const expr_ref *ref, baton_value *out, char *err,
                    size_t errlen)
{
    *out = ((bench_ctx *)ud)->by_slot[ref->slot];
    return 0;
}

static void bench_condition(const schema *s)
{
    const char *text =
        "profile.tier == 'gold' and event.total >= 100 and now() - profile.created_at > 30d";
    expr_scope *sc = expr_scope_journey(s, schema_entity_find(s, "profiles"), NULL, 0);
    char err[256];
    expr *e = expr_compile_msg(text, sc, EXPR_WANT_BOOL, err, sizeof err);
    if (!e) {
        printf("bench_expr: compile failed: %s\n", err);
        return;
    }
    bench_ctx ctx;
    for (size_t i = 0; i < expr_ref_count(e); i++) {
        const expr_ref *r = expr_ref_at(e, i);
        baton_value v = {.type = BATON_T_NULL};
        if (!strcmp(r->path, "profile.tier"))
            v = (baton_value){.type = BATON_T_STRING, .v.s = {"gold", 4}};
        else if (!strcmp(r->path, "event.total"))
            v = (baton_value){.type = BATON_T_FLOAT, .v.f = 159.9};
        else if (!strcmp(r->path, "profile.created_at"))
            v = (baton_value){.type = BATON_T_TIMESTAMP, .v.ts = 1700000000};
        ctx.by_slot[r->slot] = v;
    }
    expr_env env = {.get = slot_get, .ud = &ctx, .now = 1763892000};
    expr_arena arena;
    expr_arena_init(&arena);
    long n = 0, hits = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < 100000; i++)
            hits += expr_eval_bool(e, &env, &arena, err, sizeof err);
        n += 100000;
        t = now_s();
    } while (t - t0 < 1.0);
    double rate = (double)n / (t - t0);
    printf("condition: %.2fM evaluations/s on one core (%ld true of %ld; target 5M: %.2fx)\n",
           rate / 1e6, hits, n, rate / 5e6);
    printf("  %s\n", text);
    expr_arena_free(&arena);
    expr_free(e);
    expr_scope_free(sc);
}

static void bench_render(const schema *s)
{
    /* 2 KB of HTML, 10 placeholders spread through it */
    static const char *names[] = {"first_name", "city", "tier", "email", "id"};
    buf text;
    buf_init(&text);
    buf_adds(&text, "<html><body>");
    for (int i = 0; i < 10; i++) {
        buf_adds(&text, "<p>Dear customer, here is a paragraph of our newsletter with offers "
                        "chosen for you this week, with free delivery on everything in the shop, "
                        "and a word about our stores near you: ");
        if (i == 3)
            buf_adds(&text, "{{ upper(tier) }}");
        else if (i == 7)
            buf_adds(&text, "{{#if visits > 2}}thanks for coming back{{else}}welcome{{/if}}");
        else
            buf_addf(&text, "{{ %s }}", names[i % 5]);
        buf_adds(&text, ".</p>\n");
    }
    buf_adds(&text, "<footer>You receive this because you asked to. Unsubscribe at any "
                    "time.</footer></body></html>\n");
    expr_scope *sc = expr_scope_new(s, schema_entity_find(s, "profiles"));
    char err[256];
    template *t = template_compile_msg(text.data, sc, TEMPLATE_HTML, err, sizeof err);
    if (!t) {
        printf("bench_expr: template failed: %s\n", err);
        return;
    }
    record *r = record_new();
    record_set_string(r, "id", "p42");
    record_set_string(r, "email", "ann@example.com");
    record_set_string(r, "first_name", "Ann & <Bob>");
    record_set_string(r, "city", "Paris");
    record_set_string(r, "tier", "gold");
    record_set_int(r, "visits", 3);
    expr_env env = expr_env_record(r, 1763892000);
    expr_arena arena;
    expr_arena_init(&arena);
    buf out;
    buf_init(&out);
    long n = 0;
    size_t bytes = 0;
    double t0 = now_s(), t1;
    do {
        for (int i = 0; i < 10000; i++) {
            buf_reset(&out);
            template_render(t, &env, &arena, &out, err, sizeof err);
        }
        n += 10000;
        t1 = now_s();
    } while (t1 - t0 < 1.0);
    bytes = out.len;
    double rate = (double)n / (t1 - t0);
    printf("render: %.0fk renders/s on one core of a %zu-byte template (%zu bytes out, 10 "
           "placeholders, HTML-escaped; target 500k: %.2fx)\n",
           rate / 1e3, text.len, bytes, rate / 5e5);
    buf_free(&out);
    expr_arena_free(&arena);
    record_free(r);
    template_free(t);
    expr_scope_free(sc);
    buf_free(&text);
}

int main(void)
{
    schema s;
    fx_schema(&s);
    bench_condition(&s);
    bench_render(&s);
    schema_free(&s);
    return 0;
}
