/* campaign/edit — a campaign's text checked as the file it will replace
 * (the console checks as the user types, and before it saves). */
#include <stdlib.h>
#include <unistd.h>

#include "campaign/engine.h"
#include "config/cfgfile.h"

size_t campaign_check_text(app *a, const char *path, const char *text, size_t n, diag *d)
{
    size_t before = d->errors, first = d->n;
    char err[512], *tmp = NULL;
    if (cfgfile_scratch(path, text, n, &tmp, err, sizeof err) != 0) {
        diag_error(d, path, 0, "cannot check the text: %s", err);
        return d->errors - before;
    }
    act_registry reg;
    if (act_registry_load(&reg, a, d) == 0) {
        campaign c;
        if (campaign_parse(&c, tmp, d) == 0) {
            campaign_graph(&c, d);
            camp_env e;
            if (camp_env_open(&e, a, &c, &reg, CAMP_OPEN_CHECK, d) == 0)
                camp_check(&e);
            camp_env_close(&e);
        }
        campaign_free(&c);
    }
    act_registry_free(&reg);
    unlink(tmp);
    diag_rename(d, first, tmp, path);
    free(tmp);
    return d->errors - before;
}
