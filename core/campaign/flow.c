/* Flow activities: they move no data of their own. wait, signal and
 * and_join pass their (first) input's rows on, unchanged; end closes a
 * branch. */
#include <string.h>

#include "campaign/act_host.h"
#include "campaign/chain.h"
#include "campaign/engine.h"

static int one_input_like(baton_activity_ctx *x, size_t min, size_t max, const char *what)
{
    size_t n = ah_input_count(x);
    if (n < min || n > max) {
        ah_error(x, NULL, "%s", what);
        return -1;
    }
    const char *dim = ah_input_dimension(x, 0);
    for (size_t i = 1; i < n; i++)
        if (!dim || !ah_input_dimension(x, i) || strcmp(dim, ah_input_dimension(x, i)) != 0) {
            ah_error(x, "inputs", "every input must be of one dimension ('%s' and '%s')",
                     dim ? dim : "none",
                     ah_input_dimension(x, i) ? ah_input_dimension(x, i) : "none");
            return -1;
        }
    return 0;
}

static int wait_check(void *state, baton_activity_ctx *x)
{
    if (one_input_like(x, 1, 1, "a wait takes one input"))
        return -1;
    return ah_output(x, NULL, ah_input_dimension(x, 0), 0);
}

static int signal_check(void *state, baton_activity_ctx *x)
{
    if (one_input_like(x, 1, 1, "a signal takes one input"))
        return -1;
    return ah_output(x, NULL, ah_input_dimension(x, 0), 0);
}

static int join_check(void *state, baton_activity_ctx *x)
{
    if (one_input_like(x, 2, 64, "an and_join takes two inputs or more (inputs = [ ... ])"))
        return -1;
    return ah_output(x, NULL, ah_input_dimension(x, 0), 0);
}

static int end_check(void *state, baton_activity_ctx *x)
{
    if (ah_input_count(x) < 1) {
        ah_error(x, NULL, "an end takes one input or more");
        return -1;
    }
    return camp_chain_check(x);
}

static const baton_config_key end_keys[] = {
    {.name = "start",
     .type = BATON_CFG_STRING,
     .help = "a campaign to run once this run is done, when rows reached this end"},
    {.name = "parameters",
     .type = BATON_CFG_LIST,
     .help = "that campaign's parameters, a group { NAME = value; ... }"},
    {0}};

static const baton_config_key signal_keys[] = {
    {.name = "timeout",
     .type = BATON_CFG_DURATION,
     .required = 1,
     .help = "how long the rows wait for the signal; then the branch ends there"},
    {0}};

static const baton_config_key wait_keys[] = {
    {.name = "duration",
     .type = BATON_CFG_DURATION,
     .required = 1,
     .help = "how long the run waits before the activities after it"},
    {0}};

const baton_activity_type camp_flow_types[] = {
    {.size = sizeof(baton_activity_type),
     .name = "wait",
     .help = "wait a duration, then pass the rows on",
     .keys = wait_keys,
     .check = wait_check},
    {.size = sizeof(baton_activity_type),
     .name = "signal",
     .help = "wait for `baton campaign signal` (or POST .../signal), then pass the rows on",
     .keys = signal_keys,
     .check = signal_check},
    {.size = sizeof(baton_activity_type),
     .name = "and_join",
     .help = "continue once every input is done, with the first input's rows",
     .check = join_check},
    {.size = sizeof(baton_activity_type),
     .name = "end",
     .help = "the end of a branch; may start another campaign",
     .keys = end_keys,
     .check = end_check},
    {0},
};
