/* activity_reconcile — import a CSV file (RFC 4180, a header line) and
 * match its rows to an entity by a key: the output is the matched rows of
 * that entity, carrying the file's other columns; the rows that match
 * nothing are reported with their line numbers. The file is loaded into
 * a temporary table with bound parameters, and matched in SQL. */
#include <baton/baton.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const baton_host *H;

static int rc_init(baton_instance *inst, const baton_host *host, void **state)
{
    if (host->size < offsetof(baton_host, act_setting_path) + sizeof(void *)) {
        host->set_error(inst, "this host has no campaign activities");
        return -1;
    }
    H = host;
    *state = NULL;
    return 0;
}
static void rc_destroy(void *state) {}

static const baton_config_key keys[] = {
    {.name = "file",
     .type = BATON_CFG_PATH,
     .required = 1,
     .help = "the CSV file to import (UTF-8, a header line), relative to the campaign file"},
    {.name = "dimension",
     .type = BATON_CFG_STRING,
     .required = 1,
     .help = "the entity its rows are matched to (\"profiles\")"},
    {.name = "column",
     .type = BATON_CFG_STRING,
     .required = 1,
     .help = "the file's column holding the key"},
    {.name = "field",
     .type = BATON_CFG_STRING,
     .help = "the entity's field it is matched with (default: the column's name)"},
    {0}};

/* ---- a small RFC 4180 reader ---- */

typedef struct csv {
    FILE *f;
    int line;      /* line the current record starts on */
    int next_line; /* line the next record starts on */
    char **cells;
    size_t n, cap;
    char *cell;
    size_t clen, ccap;
} csv;

static void cell_add(csv *c, char ch)
{
    if (c->clen + 2 > c->ccap) {
        c->ccap = c->ccap ? c->ccap * 2 : 64;
        c->cell = BATON_CHECKED(realloc(c->cell, c->ccap));
    }
    c->cell[c->clen++] = ch;
}

static void cell_end(csv *c)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->cells = BATON_CHECKED(realloc(c->cells, c->cap * sizeof *c->cells));
    }
    cell_add(c, '\0');
    c->cells[c->n++] = BATON_CHECKED(strdup(c->cell));
    c->clen = 0;
}

static void record_clear(csv *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->cells[i]);
    c->n = 0;
}

/* 1 a record, 0 end of file, -1 malformed (unterminated quote). */
static int csv_next(csv *c)
{
    record_clear(c);
    c->line = c->next_line;
    int ch = fgetc(c->f);
    if (ch == EOF)
        return 0;
    if (c->line == 1 && ch == 0xEF) { /* UTF-8 byte order mark */
        fgetc(c->f);
        fgetc(c->f);
        ch = fgetc(c->f);
    }
    int quoted = 0;
    for (;; ch = fgetc(c->f)) {
        if (quoted) {
            if (ch == EOF)
                return -1;
            if (ch == '"') {
                int nx = fgetc(c->f);
                if (nx == '"') {
                    cell_add(c, '"');
                    continue;
                }
                quoted = 0;
                ungetc(nx, c->f);
                continue;
            }
            if (ch == '\n')
                c->next_line++;
            cell_add(c, (char)ch);
            continue;
        }
        if (ch == '"' && c->clen == 0) {
            quoted = 1;
        } else if (ch == ',') {
            cell_end(c);
        } else if (ch == '\r') {
            continue;
        } else if (ch == '\n' || ch == EOF) {
            cell_end(c);
            c->next_line++;
            return 1;
        } else {
            cell_add(c, (char)ch);
        }
    }
}

static int csv_open(csv *c, const char *path)
{
    memset(c, 0, sizeof *c);
    c->f = fopen(path, "rb");
    c->next_line = 1;
    return c->f ? 0 : -1;
}

static void csv_close(csv *c)
{
    record_clear(c);
    free(c->cells);
    free(c->cell);
    if (c->f)
        fclose(c->f);
}

/* A CSV header name as a work-table column: letters, digits, '_'. */
static void col_name(const char *h, char *out, size_t len)
{
    size_t k = 0;
    for (const char *p = h; *p && k + 1 < len; p++)
        out[k++] =
            ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9'))
                ? *p
                : '_';
    out[k] = '\0';
    if (k == 0 || (out[0] >= '0' && out[0] <= '9'))
        snprintf(out, len, "c_%s", h);
}

/* Header and the key's position; -1 after reporting. */
static int read_header(baton_activity_ctx *x, csv *c, int *keycol)
{
    const char *path = H->act_setting_path(x, "file");
    if (!path || csv_open(c, path) != 0) {
        H->act_error(x, "file", "cannot read '%s'", path ? path : "");
        return -1;
    }
    if (csv_next(c) != 1 || c->n == 0) {
        H->act_error(x, "file", "%s: no header line", path);
        return -1;
    }
    const char *col = H->act_setting_string(x, "column");
    *keycol = -1;
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->cells[i], col))
            *keycol = (int)i;
    if (*keycol < 0) {
        H->act_error(x, "column", "%s:1: the header has no column '%s'", path, col);
        return -1;
    }
    return 0;
}

static const char *field_of(baton_activity_ctx *x)
{
    const char *f = H->act_setting_string(x, "field");
    return f ? f : H->act_setting_string(x, "column");
}

static int rc_check(void *st, baton_activity_ctx *x)
{
    if (H->act_input_count(x) != 0) {
        H->act_error(x, NULL, "takes no input");
        return -1;
    }
    const char *dim = H->act_setting_string(x, "dimension");
    if (!dim || H->act_entity(x, dim, NULL, NULL)) {
        H->act_error(x, "dimension", "'%s' is not an entity of the schema", dim ? dim : "");
        return -1;
    }
    if (H->act_field_type(x, dim, field_of(x)) < 0) {
        H->act_error(x, H->act_setting_string(x, "field") ? "field" : "column",
                     "%s has no field '%s' to match with", dim, field_of(x));
        return -1;
    }
    csv c;
    int keycol, rc = read_header(x, &c, &keycol);
    if (rc == 0) {
        H->act_output(x, NULL, dim, -1);
        for (size_t i = 0; i < c.n; i++) {
            if ((int)i == keycol)
                continue;
            char name[128];
            col_name(c.cells[i], name, sizeof name);
            if (H->act_field_type(x, dim, name) >= 0)
                snprintf(name + strlen(name), sizeof name - strlen(name), "_csv");
            H->act_output_column(x, NULL, name, BATON_T_STRING);
        }
    }
    csv_close(&c);
    return rc;
}

static void ident(baton_buf *b, const char *name)
{
    H->buf_printf(b, "\"");
    for (const char *p = name; *p; p++)
        H->buf_printf(b, *p == '"' ? "\"\"" : "%c", *p);
    H->buf_printf(b, "\"");
}

typedef struct unmatched {
    baton_activity_ctx *x;
    const char *dim, *field;
    int64_t n;
} unmatched;

static int note_unmatched(void *ud, size_t n, const char *const *names, const baton_value *v)
{
    unmatched *u = ud;
    u->n++;
    if (n >= 2)
        H->act_note(u->x, "line %lld: no %s with %s = '%.*s'", (long long)v[0].v.i, u->dim,
                    u->field, v[1].type == BATON_T_STRING ? (int)v[1].v.s.len : 0,
                    v[1].type == BATON_T_STRING ? v[1].v.s.ptr : "");
    return 0;
}

static int rc_run(void *st, baton_activity_ctx *x)
{
    const char *dim = H->act_setting_string(x, "dimension"), *table, *key;
    H->act_entity(x, dim, &table, &key);
    const char *out = H->act_output_table(x, NULL);
    csv c;
    int keycol;
    if (read_header(x, &c, &keycol)) {
        csv_close(&c);
        return -1;
    }
    size_t ncols = c.n;
    char **names = BATON_CHECKED(calloc(ncols, sizeof *names));
    for (size_t i = 0; i < ncols; i++) {
        char name[128];
        col_name(c.cells[i], name, sizeof name);
        if ((int)i != keycol && H->act_field_type(x, dim, name) >= 0)
            snprintf(name + strlen(name), sizeof name - strlen(name), "_csv");
        names[i] = BATON_CHECKED(strdup(name));
    }
    char imp[600];
    snprintf(imp, sizeof imp, "%s_imp", out);
    baton_buf *b = H->buf_new();
    int rc = 0;
    H->buf_printf(b, "DROP TABLE IF EXISTS %s", imp);
    rc = H->act_sql(x, H->buf_data(b, NULL), NULL, NULL);
    H->buf_reset(b);
    H->buf_printf(b, "CREATE TABLE %s (_line INTEGER, _k TEXT", imp);
    for (size_t i = 0; i < ncols; i++)
        if ((int)i != keycol) {
            H->buf_printf(b, ", ");
            ident(b, names[i]);
            H->buf_printf(b, " TEXT");
        }
    H->buf_printf(b, ")");
    if (rc == 0)
        rc = H->act_sql(x, H->buf_data(b, NULL), NULL, NULL);
    H->buf_reset(b);
    /* load in batches of rows, every value bound */
    size_t rows = 0;
    int r;
    while (rc == 0 && (r = csv_next(&c)) != 0) {
        if (r < 0) {
            H->act_error(x, "file", "%s:%d: unterminated quoted field",
                         H->act_setting_path(x, "file"), c.line);
            rc = -1;
            break;
        }
        if (c.n == 1 && c.cells[0][0] == '\0')
            continue; /* a blank line */
        if (c.n != ncols) {
            H->act_error(x, "file", "%s:%d: %zu fields where the header has %zu",
                         H->act_setting_path(x, "file"), c.line, c.n, ncols);
            rc = -1;
            break;
        }
        H->buf_printf(b, rows ? ", (" : "INSERT INTO %s VALUES (", imp);
        baton_value v = {.type = BATON_T_INT, .v.i = c.line};
        H->act_param(x, &v, b);
        H->buf_printf(b, ", ");
        v = (baton_value){.type = BATON_T_STRING,
                          .v.s = {c.cells[keycol], strlen(c.cells[keycol])}};
        H->act_param(x, &v, b);
        for (size_t i = 0; i < ncols; i++)
            if ((int)i != keycol) {
                H->buf_printf(b, ", ");
                v = (baton_value){.type = BATON_T_STRING, .v.s = {c.cells[i], strlen(c.cells[i])}};
                H->act_param(x, &v, b);
            }
        H->buf_printf(b, ")");
        if (++rows == 200) {
            rc = H->act_sql(x, H->buf_data(b, NULL), NULL, NULL);
            H->buf_reset(b);
            rows = 0;
        }
    }
    if (rc == 0 && rows)
        rc = H->act_sql(x, H->buf_data(b, NULL), NULL, NULL);
    H->buf_reset(b);
    /* matched: one row per entity row, the file's first line for it */
    if (rc == 0) {
        H->buf_printf(b, "CREATE TABLE %s AS SELECT t.", out);
        ident(b, key);
        H->buf_printf(b, " AS _key");
        for (size_t i = 0; i < ncols; i++)
            if ((int)i != keycol) {
                H->buf_printf(b, ", i.");
                ident(b, names[i]);
            }
        H->buf_printf(b, " FROM %s i JOIN ", imp);
        ident(b, table);
        H->buf_printf(b, " t ON t.");
        ident(b, field_of(x));
        H->buf_printf(b, " = i._k WHERE i._line = (SELECT min(_line) FROM %s j WHERE j._k = i._k)",
                      imp);
        rc = H->act_sql(x, H->buf_data(b, NULL), NULL, NULL);
        H->buf_reset(b);
    }
    if (rc == 0) {
        unmatched u = {x, dim, field_of(x), 0};
        H->buf_printf(b, "SELECT _line, _k FROM %s i WHERE NOT EXISTS (SELECT 1 FROM ", imp);
        ident(b, table);
        H->buf_printf(b, " t WHERE t.");
        ident(b, field_of(x));
        H->buf_printf(b, " = i._k) ORDER BY _line");
        rc = H->act_sql(x, H->buf_data(b, NULL), note_unmatched, &u);
        H->buf_reset(b);
        if (rc == 0 && u.n)
            H->act_note(x, "%lld line(s) of %s matched no %s", (long long)u.n,
                        H->act_setting_path(x, "file"), dim);
    }
    H->buf_printf(b, "DROP TABLE IF EXISTS %s", imp);
    H->act_sql(x, H->buf_data(b, NULL), NULL, NULL);
    H->buf_free(b);
    for (size_t i = 0; i < ncols; i++)
        free(names[i]);
    free(names);
    csv_close(&c);
    return rc;
}

static const baton_activity_type types[] = {
    {.size = sizeof(baton_activity_type),
     .name = "reconcile",
     .help = "import a CSV file and match its rows to an entity by a key",
     .keys = keys,
     .check = rc_check,
     .run = rc_run},
    {0}};

BATON_PLUGIN(.name = "activity_reconcile", .version = "1.0.0",
             .description = "reconcile: match an imported CSV file to an entity",
             .kind = BATON_KIND_ACTIVITY, .init = rc_init, .destroy = rc_destroy,
             .activities = types)
