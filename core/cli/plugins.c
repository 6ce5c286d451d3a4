/* baton plugins — what is on the plugin path, and what each one takes. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/app.h"
#include "base/buf.h"
#include "cli/cli.h"
#include "config/keymap.h"
#include "base/mem.h"

typedef struct listing {
    app *a;
    json_t *arr;
    int json;
} listing;

/* A use names a plugin by name, or by a path whose file is <name>.so. */
static int uses_plugin(const conf_use *u, const char *name)
{
    if (!u->plugin)
        return 0;
    const char *base = strrchr(u->plugin, '/');
    base = base ? base + 1 : u->plugin;
    size_t n = strlen(name);
    return strncmp(base, name, n) == 0 && (!base[n] || strcmp(base + n, ".so") == 0);
}

static void used_by(app *a, const char *name, buf *out)
{
    for (size_t i = 0; i < a->conf.nuses; i++) {
        const conf_use *u = &a->conf.uses[i];
        if (uses_plugin(u, name))
            buf_addf(out, "%s%s%s", out->len ? "," : "", u->where, u->enabled ? "" : "(disabled)");
    }
}

static void list_one(void *ud, const char *name, const char *path)
{
    listing *l = ud;
    char err[1024];
    plugin *p = plugin_load(&l->a->reg, path, err, sizeof err);
    buf uses;
    buf_init(&uses);
    used_by(l->a, name, &uses);
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(name));
    json_object_set_new(o, "path", json_string(path));
    if (p) {
        char abi[32];
        snprintf(abi, sizeof abi, "%u.%u", p->desc.abi_major, p->desc.abi_minor);
        json_object_set_new(o, "kind", json_string(conf_kind_name(p->desc.kind)));
        json_object_set_new(o, "version", json_string(p->desc.version));
        json_object_set_new(o, "abi", json_string(abi));
        json_object_set_new(o, "description",
                            json_string(p->desc.description ? p->desc.description : ""));
        if (p->desc.kind == BATON_KIND_ACTIVITY) {
            json_t *types = json_array();
            for (const baton_activity_type *t = p->desc.activities; t->name; t++)
                json_array_append_new(types, json_string(t->name));
            json_object_set_new(o, "activities", types);
        }
    } else {
        json_object_set_new(o, "error", json_string(err));
    }
    json_t *u = json_array();
    for (size_t i = 0; i < l->a->conf.nuses; i++) {
        const conf_use *cu = &l->a->conf.uses[i];
        if (!uses_plugin(cu, name))
            continue;
        if (cu->enabled) {
            json_array_append_new(u, json_string(cu->where));
        } else {
            char *w = xasprintf("%s(disabled)", cu->where);
            json_array_append_new(u, json_string(w));
            free(w);
        }
    }
    json_object_set_new(o, "used_by", u);
    if (!l->json) {
        if (p)
            printf("%-22s %-9s %-8s ABI %u.%u  %s\n", name, conf_kind_name(p->desc.kind),
                   p->desc.version, p->desc.abi_major, p->desc.abi_minor,
                   uses.len ? uses.data : "-");
        else
            printf("%-22s error: %s\n", name, err);
    }
    json_array_append_new(l->arr, o);
    buf_free(&uses);
}

static void describe_keys(const baton_config_key *keys, const char *owner)
{
    for (const baton_config_key *k = keys; k && k->name; k++) {
        printf("  %-14s %-9s", k->name, keymap_type_name(k->type));
        if (k->required)
            printf(" required");
        else if (k->default_value)
            printf(" default \"%s\"", k->default_value);
        if (k->has_range)
            printf(" range %g..%g", k->min, k->max);
        if (k->choices) {
            printf(" one of:");
            for (const char *const *c = k->choices; *c; c++)
                printf(" %s", *c);
        }
        printf("%s%s%s\n", k->help ? "\n      " : "", k->help ? k->help : "", owner);
    }
}

/* The reference page of a plugin's kind, at the plugin's own section when
 * the page has one (the bundled plugins: a settings table generated from
 * this very output, scripts/docs-keys.sh). */
static void describe_reference(const char *name, baton_kind kind)
{
    const char *page = kind == BATON_KIND_CHANNEL  ? "channels.md"
                       : kind == BATON_KIND_SOURCE ? "sources.md"
                       : kind == BATON_KIND_ACTION ? "actions.md"
                       : kind == BATON_KIND_EVENT  ? "events.md"
                                                   : "campaigns.md";
    char ref[4200], marker[160];
    cli_doc_path(page, NULL, ref, sizeof ref);
    snprintf(marker, sizeof marker, "<!-- keys: %s -->", name);
    int has = 0;
    FILE *f = fopen(ref, "r");
    char line[256];
    while (f && !has && fgets(line, sizeof line, f))
        has = strncmp(line, marker, strlen(marker)) == 0;
    if (f)
        fclose(f);
    cli_doc_path(page, has ? name : NULL, ref, sizeof ref);
    printf("\nreference: %s\n", ref);
}

static int describe(app *a, const char *name)
{
    char err[1024];
    plugin *p = plugin_load(&a->reg, name, err, sizeof err);
    if (!p) {
        fprintf(stderr, "baton plugins: %s\n", err);
        return EXIT_USAGE;
    }
    const baton_plugin *d = &p->desc;
    printf("%s %s — %s plugin, ABI %u.%u\n%s%s", p->name, d->version, conf_kind_name(d->kind),
           d->abi_major, d->abi_minor, d->description ? d->description : "",
           d->description ? "\n" : "");
    printf("file: %s\n", p->path);
    if (d->kind != BATON_KIND_ACTIVITY) {
        printf("\nsettings read by baton itself:\n");
        describe_keys(plugin_host_keys(d->kind), "");
        printf("\nsettings of the plugin:\n");
        if (!d->config || !d->config->name)
            printf("  (none)\n");
        describe_keys(d->config, "");
    } else {
        for (const baton_activity_type *t = d->activities; t->name; t++) {
            printf("\nactivity type %s%s%s\n", t->name, t->help ? ": " : "",
                   t->help ? t->help : "");
            describe_keys(t->keys, "");
        }
    }
    if (d->kind == BATON_KIND_CHANNEL && d->ops) {
        const baton_channel_ops *o = d->ops;
        printf("\ncontent parts:");
        for (const char *const *part = o->parts; part && *part; part++)
            printf(" %s", *part);
        printf("\n");
    }
    describe_reference(p->name, d->kind);
    return EXIT_OK;
}

int cmd_plugins(const cli_ctx *ctx, int argc, char **argv)
{
    int json = 0;
    const char *desc = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (strcmp(argv[i], "--describe") == 0 && i + 1 < argc)
            desc = argv[++i];
        else if (strcmp(argv[i], "--describe") == 0) {
            fprintf(stderr, "baton plugins: --describe needs a plugin name (see baton plugins)\n");
            return EXIT_USAGE;
        } else {
            fprintf(stderr, "baton plugins: unexpected argument '%s'\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    app a;
    if (cli_open_app(ctx, &a) != 0)
        return EXIT_USAGE;
    int rc = EXIT_OK;
    if (desc) {
        rc = describe(&a, desc);
    } else {
        listing l = {.a = &a, .arr = json_array(), .json = json};
        plugin_registry_scan(&a.reg, list_one, &l);
        if (json) {
            json_t *root = json_pack("{s:o}", "plugins", l.arr);
            char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            printf("%s\n", s);
            free(s);
            json_decref(root);
        } else {
            json_decref(l.arr);
        }
    }
    app_close(&a);
    return rc;
}
