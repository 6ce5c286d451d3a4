/* baton campaign plan | run | runs — and the campaign part of `baton
 * check`. */
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/file.h>

#include "plugin/app.h"
#include "base/buf.h"
#include "campaign/engine.h"
#include "campaign/history.h"
#include "campaign/report.h"
#include "cli/cli.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/timefmt.h"
#include <time.h>

/* Everything a command needs: the app, the types, the campaign, checked. */
typedef struct loaded {
    app a;
    act_registry reg;
    campaign c;
    camp_env e;
    int have_reg, have_c, have_e;
} loaded;

static void unload(loaded *l)
{
    if (l->have_e)
        camp_env_close(&l->e);
    if (l->have_c)
        campaign_free(&l->c);
    if (l->have_reg)
        act_registry_free(&l->reg);
    app_close(&l->a);
}

/* Parse, graph and check one campaign file into l (registry and app
 * already open). Errors in d. */
static int load_campaign(loaded *l, const char *file, diag *d)
{
    l->have_c = 1;
    if (campaign_parse(&l->c, file, d) != 0)
        return -1;
    int graph = campaign_graph(&l->c, d);
    l->have_e = 1;
    if (camp_env_open(&l->e, &l->a, &l->c, &l->reg, 0, d) != 0)
        return -1;
    int rc = camp_check(&l->e);
    return graph || rc ? -1 : 0;
}

static int open_all(loaded *l, const cli_ctx *ctx, const char *which, diag *d)
{
    memset(l, 0, sizeof *l);
    if (app_open(&l->a, ctx->config, APP_INIT, d) != 0)
        return -1;
    l->have_reg = 1;
    if (act_registry_load(&l->reg, &l->a, d) != 0)
        return -1;
    char *file = camp_locate(&l->a, which, d);
    if (!file)
        return -1;
    int rc = load_campaign(l, file, d);
    free(file);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Output: text, JSON, Graphviz                                        */
/* ------------------------------------------------------------------ */

static void dot_escape(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', out);
        fputc(*s, out);
    }
}

static void print_dot(const camp_env *e, FILE *out)
{
    fprintf(out, "digraph \"");
    dot_escape(out, e->c->name);
    fprintf(out, "\" {\n  rankdir=LR;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n"
                 "  edge [fontname=\"Helvetica\", fontsize=10];\n");
    for (size_t i = 0; i < e->c->nacts; i++) {
        const camp_activity *a = &e->c->acts[i];
        const act_state *s = &e->s[i];
        fprintf(out, "  \"");
        dot_escape(out, a->id);
        fprintf(out, "\" [label=\"");
        dot_escape(out, a->id);
        fprintf(out, "\\n");
        dot_escape(out, a->type_name);
        if (a->type && a->type->send && s->done) {
            fprintf(out, "\\n%lld messages", (long long)s->would_send);
            if (s->no_address || s->no_consent)
                fprintf(out, "\\n(%lld no address, %lld no consent)", (long long)s->no_address,
                        (long long)s->no_consent);
        }
        fprintf(out, "\"%s];\n",
                a->type && a->type->send   ? ", shape=box3d"
                : a->type && a->type->flow ? ", shape=ellipse"
                                           : "");
    }
    for (size_t i = 0; i < e->c->nacts; i++) {
        const camp_activity *a = &e->c->acts[i];
        for (size_t j = 0; j < a->ninputs; j++) {
            const camp_input *in = &a->inputs[j];
            if (in->act < 0)
                continue;
            const act_state *ps = &e->s[in->act];
            fprintf(out, "  \"");
            dot_escape(out, e->c->acts[in->act].id);
            fprintf(out, "\" -> \"");
            dot_escape(out, a->id);
            fprintf(out, "\" [label=\"");
            if (strchr(in->text, '.')) {
                dot_escape(out, strchr(in->text, '.') + 1);
                fprintf(out, ": ");
            }
            if (in->out >= 0 && ps->counts && ps->counts[in->out] >= 0)
                fprintf(out, "%lld", (long long)ps->counts[in->out]);
            else
                fprintf(out, "?");
            fprintf(out, "\"];\n");
        }
    }
    fprintf(out, "}\n");
}

static void print_text(const camp_env *e, FILE *out)
{
    fprintf(out, "campaign %s (%s)\n", e->c->name, e->c->file);
    for (size_t k = 0; k < e->c->norder; k++) {
        size_t i = e->c->order[k];
        const camp_activity *a = &e->c->acts[i];
        const act_state *s = &e->s[i];
        fprintf(out, "  %-16s %-16s", a->id, a->type_name);
        for (size_t j = 0; s->counts && j < a->nouts; j++)
            fprintf(out, " %s=%lld", a->outs[j].transition, (long long)s->counts[j]);
        if (a->type && a->type->send) {
            fprintf(out, " messages=%lld (no address %lld, no consent %lld",
                    (long long)s->would_send, (long long)s->no_address, (long long)s->no_consent);
            if (s->suppressed) /* unsubscribed, bounced, complained */
                fprintf(out, ", suppressed %lld", (long long)s->suppressed);
            fprintf(out, ")");
        }
        fprintf(out, "  [%lld ms]\n", (long long)s->ms);
        for (size_t n = 0; n < s->nnotes; n++)
            fprintf(out, "      %s\n", s->notes[n]);
    }
}

/* ------------------------------------------------------------------ */
/* plan                                                                */
/* ------------------------------------------------------------------ */

static int cmd_plan(const cli_ctx *ctx, int argc, char **argv)
{
    const char *which = NULL;
    int json = 0, dot = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--dot"))
            dot = 1;
        else if (argv[i][0] == '-' || which) {
            fprintf(stderr, "baton campaign plan: unexpected argument '%s'\n", argv[i]);
            return EXIT_USAGE;
        } else
            which = argv[i];
    }
    if (!which || (json && dot)) {
        fprintf(stderr, "usage: baton campaign plan NAME|FILE [--json | --dot]\n");
        return EXIT_USAGE;
    }
    diag d;
    diag_init(&d);
    loaded l;
    int rc = EXIT_OK;
    if (open_all(&l, ctx, which, &d) != 0) {
        diag_print(&d, stderr);
        fprintf(stderr, "baton campaign plan: %zu error(s)\n", d.errors);
        rc = l.have_e && l.e.unreachable ? EXIT_RUNTIME : EXIT_USAGE;
        goto out;
    }
    diag_print(&d, stderr);
    l.e.plan = 1;
    l.e.progress = (!json && !dot && isatty(2)) ? stderr : NULL;
    if (camp_execute(&l.e) != 0) {
        fprintf(stderr, "baton campaign plan: %s\n", l.e.error);
        rc = EXIT_RUNTIME;
    } else if (json) {
        json_t *o = campaign_plan_json(&l.e);
        char *txt = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s\n", txt);
        free(txt);
        json_decref(o);
    } else if (dot) {
        print_dot(&l.e, stdout);
    } else {
        print_text(&l.e, stdout);
        printf("nothing was sent (plan)\n");
    }
    camp_drop_tables(&l.e);
out:
    unload(&l);
    diag_free(&d);
    return rc;
}

/* ------------------------------------------------------------------ */
/* run                                                                 */
/* ------------------------------------------------------------------ */

/* Run one campaign file. Returns an exit code. Used by the CLI and the
 * scheduler. */
static int cmd_run(const cli_ctx *ctx, int argc, char **argv)
{
    const char *which = NULL;
    int resume = 0, dry = 0;
    char **proof = xcalloc((size_t)argc + 1, sizeof *proof);
    size_t nproof = 0;
    json_t *params = json_object();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--resume"))
            resume = 1;
        else if (!strcmp(argv[i], "--dry-run"))
            dry = 1;
        else if (!strcmp(argv[i], "--param")) {
            const char *eq = i + 1 < argc ? strchr(argv[i + 1], '=') : NULL;
            if (!eq || eq == argv[i + 1]) {
                fprintf(stderr, "baton campaign run: --param needs NAME=VALUE\n");
                free(proof);
                json_decref(params);
                return EXIT_USAGE;
            }
            i++;
            char *name = xstrndup(argv[i], (size_t)(eq - argv[i]));
            json_object_set_new(params, name, json_string(eq + 1));
            free(name);
        } else if (!strcmp(argv[i], "--proof")) {
            while (i + 1 < argc && argv[i + 1][0] != '-')
                proof[nproof++] = argv[++i];
            if (!nproof) {
                fprintf(stderr, "baton campaign run: --proof needs ADDRESS...\n");
                free(proof);
                json_decref(params);
                return EXIT_USAGE;
            }
        } else if (argv[i][0] == '-' || which) {
            fprintf(stderr, "baton campaign run: unexpected argument '%s'\n", argv[i]);
            free(proof);
            json_decref(params);
            return EXIT_USAGE;
        } else
            which = argv[i];
    }
    if (!which) {
        fprintf(stderr,
                "usage: baton campaign run NAME|FILE [--dry-run] [--resume] [--proof ADDRESS...] "
                "[--param NAME=VALUE...]\n");
        free(proof);
        json_decref(params);
        return EXIT_USAGE;
    }
    diag d;
    diag_init(&d);
    app a;
    act_registry reg;
    int rc = EXIT_USAGE, have_reg = 0;
    if (app_open(&a, ctx->config, APP_INIT, &d) == 0) {
        have_reg = 1;
        if (act_registry_load(&reg, &a, &d) == 0) {
            char *file = camp_locate(&a, which, &d);
            camp_run_opts o = {.trigger = resume ? "resume" : "manual",
                               .resume = resume,
                               .dry_run = dry,
                               .proof = proof,
                               .nproof = nproof,
                               .progress = stderr,
                               .params = params,
                               .params_text = 1};
            if (file)
                rc = campaign_run_file(&a, &reg, file, &o, &d);
            free(file);
        }
    }
    diag_print(&d, stderr);
    if (d.errors)
        fprintf(stderr, "baton campaign run: %zu error(s); nothing was sent\n", d.errors);
    if (have_reg)
        act_registry_free(&reg);
    app_close(&a);
    diag_free(&d);
    free(proof);
    json_decref(params);
    return rc;
}

static int cmd_runs(const cli_ctx *ctx, int argc, char **argv)
{
    const char *which = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (argv[i][0] == '-' || which) {
            fprintf(stderr, "baton campaign runs: unexpected argument '%s'\n", argv[i]);
            return EXIT_USAGE;
        } else
            which = argv[i];
    }
    diag d;
    diag_init(&d);
    app a;
    int rc = EXIT_OK;
    if (app_open(&a, ctx->config, 0, &d) != 0) {
        diag_print(&d, stderr);
        rc = EXIT_USAGE;
    } else {
        store st;
        char err[512];
        if (store_open(&st, a.conf.data_dir, err, sizeof err) != 0 ||
            history_init(&st, err, sizeof err) != 0) {
            fprintf(stderr, "baton campaign runs: %s\n", err);
            rc = EXIT_RUNTIME;
        } else {
            history_print(&st, which, json, stdout);
            store_close(&st);
        }
    }
    app_close(&a);
    diag_free(&d);
    return rc;
}

/* baton campaign signal NAME RUN_ID [--param NAME=VALUE...]: the signal
 * recorded, then the run resumed here (as --resume would). */
static int cmd_signal(const cli_ctx *ctx, int argc, char **argv)
{
    const char *which = NULL, *rid = NULL;
    json_t *given = json_object();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--param")) {
            const char *eq = i + 1 < argc ? strchr(argv[i + 1], '=') : NULL;
            if (!eq || eq == argv[i + 1]) {
                fprintf(stderr, "baton campaign signal: --param needs NAME=VALUE\n");
                json_decref(given);
                return EXIT_USAGE;
            }
            i++;
            char *name = xstrndup(argv[i], (size_t)(eq - argv[i]));
            json_object_set_new(given, name, json_string(eq + 1));
            free(name);
        } else if (argv[i][0] == '-' || (which && rid)) {
            fprintf(stderr, "baton campaign signal: unexpected argument '%s'\n", argv[i]);
            json_decref(given);
            return EXIT_USAGE;
        } else if (!which)
            which = argv[i];
        else
            rid = argv[i];
    }
    char *end = NULL;
    long long run = rid ? strtoll(rid, &end, 10) : 0;
    if (!which || !rid || *end || run <= 0) {
        fprintf(stderr, "usage: baton campaign signal NAME RUN_ID [--param NAME=VALUE...]%s%s%s\n",
                rid ? " (RUN_ID is a run's number, not '" : "", rid ? rid : "", rid ? "')" : "");
        json_decref(given);
        return EXIT_USAGE;
    }
    diag d;
    diag_init(&d);
    app a;
    act_registry reg;
    int rc = EXIT_USAGE, have_reg = 0;
    if (app_open(&a, ctx->config, APP_INIT, &d) == 0) {
        have_reg = 1;
        char *file = act_registry_load(&reg, &a, &d) == 0 ? camp_locate(&a, which, &d) : NULL;
        campaign c;
        int parsed = file && campaign_parse(&c, file, &d) == 0 && campaign_graph(&c, &d) == 0;
        json_t *params = parsed ? campaign_params_from_text(&c, given) : NULL;
        json_t *problems = params ? campaign_params_check(&c, params, 0) : NULL;
        if (problems) {
            char *txt = json_dumps(problems, JSON_COMPACT);
            diag_error(&d, c.file, 0, "campaign %s: signal parameters: %s", c.name, txt);
            free(txt);
            json_decref(problems);
        } else if (params) {
            store st;
            char err[512];
            json_t *sig = NULL;
            if (store_open(&st, a.conf.data_dir, err, sizeof err) != 0 ||
                history_init(&st, err, sizeof err) != 0) {
                fprintf(stderr, "baton campaign signal: %s\n", err);
                rc = EXIT_RUNTIME;
            } else if (history_signal(&st, &c, run, params, (int64_t)time(NULL), &sig, err,
                                      sizeof err) != 0) {
                fprintf(stderr, "baton campaign signal: %s\n", err);
                rc = EXIT_RUNTIME;
                store_close(&st);
            } else {
                store_close(&st);
                size_t k;
                json_t *v;
                json_array_foreach(sig, k, v)
                    fprintf(stderr, "campaign %s: run %lld: signal '%s' received\n", c.name, run,
                            json_string_value(v));
                json_decref(sig);
                camp_run_opts o = {.trigger = "signal", .resume = 1, .progress = stderr};
                rc = campaign_run_file(&a, &reg, file, &o, &d);
                if (rc != EXIT_OK && d.n && strstr(d.v[0].msg, "is being run by another process")) {
                    /* that process resumes it: the signal is recorded */
                    diag_print(&d, stderr);
                    diag_free(&d);
                    diag_init(&d);
                    fprintf(stderr,
                            "campaign %s: run %lld goes on in that process (the signal is "
                            "recorded)\n",
                            c.name, run);
                    rc = EXIT_OK;
                }
            }
        }
        json_decref(params);
        if (file)
            campaign_free(&c);
        free(file);
    }
    diag_print(&d, stderr);
    if (have_reg)
        act_registry_free(&reg);
    app_close(&a);
    diag_free(&d);
    json_decref(given);
    return rc;
}

int cmd_campaign(const cli_ctx *ctx, int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: baton campaign plan|run|runs|signal ...\n");
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "plan"))
        return cmd_plan(ctx, argc - 1, argv + 1);
    if (!strcmp(argv[1], "run"))
        return cmd_run(ctx, argc - 1, argv + 1);
    if (!strcmp(argv[1], "runs"))
        return cmd_runs(ctx, argc - 1, argv + 1);
    if (!strcmp(argv[1], "signal"))
        return cmd_signal(ctx, argc - 1, argv + 1);
    fprintf(stderr, "baton campaign: unknown subcommand '%s' (plan, run, runs, signal)\n", argv[1]);
    return EXIT_USAGE;
}

/* `baton check`: every configured campaign, all errors at once. */
void campaign_check_hook(app *a, diag *d, FILE *out)
{
    size_t n;
    char **files = campaign_files(a->conf.campaigns, a->conf.ncampaigns, &n);
    if (n == 0) {
        campaign_files_free(files);
        return;
    }
    act_registry reg;
    if (act_registry_load(&reg, a, d) != 0) {
        act_registry_free(&reg);
        campaign_files_free(files);
        return;
    }
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        campaign c;
        camp_env e;
        size_t before = d->errors;
        if (campaign_parse(&c, files[i], d) == 0) {
            campaign_graph(&c, d);
            if (camp_env_open(&e, a, &c, &reg, CAMP_OPEN_CHECK, d) == 0)
                camp_check(&e);
            camp_env_close(&e);
        }
        if (d->errors == before) {
            ok++;
            fprintf(out, "%s: campaign %s: ok (%zu activities)\n", files[i], c.name, c.nacts);
        }
        campaign_free(&c);
    }
    act_registry_free(&reg);
    campaign_files_free(files);
}
