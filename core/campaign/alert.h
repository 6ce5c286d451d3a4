/* campaign/alert — the alert activity (alert.c). */
#ifndef BATON_CAMPAIGN_ALERT_H
#define BATON_CAMPAIGN_ALERT_H

#include "campaign/engine.h"

extern const baton_activity_type camp_alert_type;
/* The run failed (e->error says why): every alert of the campaign sends
 * its operator the failure and the counts so far. */
void camp_alert_failed(camp_env *e);

#endif
