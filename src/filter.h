/*-------------------------------------------------------------------------
 *
 * filter.h
 *	  SNS-style subscription filter policies: compile once, match often.
 *
 * filter_compile() validates a policy (a jsonb object) and turns it into
 * a CourierFilter, allocated in the current memory context; it raises
 * invalid_parameter_value (22023) naming the path of the bad part.
 * filter_match() tests a message against a compiled filter without looking
 * at the policy's jsonb again.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COURIER_FILTER_H
#define COURIER_FILTER_H

#include "utils/jsonb.h"

/* SNS's limits on one policy */
#define FILTER_MAX_KEYS			5
#define FILTER_MAX_COMBINATIONS	150
#define FILTER_MAX_SIZE			(256 * 1024)

typedef struct CourierFilter CourierFilter;

extern CourierFilter *filter_compile(Jsonb *policy, bool body_scope);
extern bool filter_match(const CourierFilter *filter, Jsonb *doc);

#endif							/* COURIER_FILTER_H */
