/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  The backend-local queue cache, privilege checks, and the switch to
 *	  the extension owner that every SQL entry point makes.
 *
 * Queue settings, grants and the prepared plans of each queue are cached in
 * a hash table in CacheMemoryContext, so the hot paths (send, receive, ack)
 * do no catalog lookups.  Any change to courier.queue or courier.queue_grant
 * fires a statement trigger (courier._invalidate_cache) that queues a relcache
 * invalidation of courier.queue; every backend's callback then marks the
 * cache stale, and the next call rebuilds it.  Plans of dropped tables are
 * invalidated by PostgreSQL's plan cache as usual.
 *
 * Callers are checked against courier.queue_grant as themselves; the work is
 * then done as the owner of courier.queue with search_path pinned to
 * pg_catalog, pg_temp, so that neither the caller's privileges on the
 * message tables nor the caller's search_path matter.  Both switches are
 * undone by courier_leave(), or by (sub)transaction abort on error.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/trigger.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "catalog/pg_type.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "courier.h"

static HTAB *queue_cache = NULL;
static bool queue_cache_stale = false;

/* courier.queue and its owner, looked up once per backend (and after invalidation). */
static Oid	catalog_relid = InvalidOid;
static Oid	catalog_owner = InvalidOid;

static void
lookup_catalog(void)
{
	Oid			nspid;
	HeapTuple	tuple;

	nspid = get_namespace_oid("courier", false);
	catalog_relid = get_relname_relid("queue", nspid);
	if (!OidIsValid(catalog_relid))
		elog(ERROR, "pg_courier catalog table courier.queue is missing");
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(catalog_relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", catalog_relid);
	catalog_owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
}

/*
 * Relcache invalidation callback: a change to courier.queue (or a cache
 * reset) makes the whole queue cache stale.  It must not free anything here:
 * a call may be using an entry right now.
 */
void
courier_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == catalog_relid)
	{
		queue_cache_stale = true;
		catalog_relid = InvalidOid;
		catalog_owner = InvalidOid;
	}
}

static void
reset_queue_cache(void)
{
	HASH_SEQ_STATUS status;
	CourierQueue *queue;
	HASHCTL		ctl;

	if (queue_cache != NULL)
	{
		hash_seq_init(&status, queue_cache);
		while ((queue = hash_seq_search(&status)) != NULL)
		{
			for (int i = 0; i < NUM_COURIER_PLANS; i++)
				if (queue->plans[i] != NULL)
					SPI_freeplan(queue->plans[i]);
			if (queue->grants != NULL)
				pfree(queue->grants);
		}
		hash_destroy(queue_cache);
	}
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = COURIER_MAX_NAME + 4;
	ctl.entrysize = sizeof(CourierQueue);
	ctl.hcxt = CacheMemoryContext;
	queue_cache = hash_create("pg_courier queues", 64, &ctl,
							  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	queue_cache_stale = false;
}

/*
 * courier_enter
 *		Connect SPI and become the extension owner with a pinned search_path.
 *
 * Remembers the caller for privilege checks.  Must be paired with
 * courier_leave() on success; an error undoes everything by itself.
 */
void
courier_enter(CourierCall *call)
{
	call->caller = GetUserId();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (!OidIsValid(catalog_owner))
		lookup_catalog();
	GetUserIdAndSecContext(&call->saved_userid, &call->saved_sec_context);
	SetUserIdAndSecContext(catalog_owner,
						   call->saved_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	call->guc_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * courier_guard_plans
 *		After courier_enter(), for calls whose plans scan or join: pin the
 *		planner settings their cached plans rely on (undone by
 *		courier_leave()).  Sends, whose plans are single-row inserts, skip it.
 */
void
courier_guard_plans(void)
{
	/*
	 * Our plans are generic and kept for the life of the backend, and may be
	 * made while a queue is empty: without these, a plan made then would
	 * scan whole tables once the queue is long.  Every statement we run is
	 * an index lookup or an index range scan.
	 */
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	/* and JIT compiling a lookup costs far more than running it */
	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

void
courier_leave(CourierCall *call)
{
	AtEOXact_GUC(true, call->guc_nestlevel);
	SetUserIdAndSecContext(call->saved_userid, call->saved_sec_context);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
}

/* Converts an interval of the catalog (no months expected) to microseconds. */
static int64
interval_to_usecs(Interval *interval)
{
	return interval->time + (int64) interval->day * USECS_PER_DAY +
		(int64) interval->month * DAYS_PER_MONTH * USECS_PER_DAY;
}

/* Names of the queue privilege bits, admin (which implies the others) last. */
static const char *const queue_privilege_names[] = {"send", "receive", "admin", NULL};

/*
 * courier_load_grants
 *		The grants of one queue or stream, merged per grantee, in
 *		CacheMemoryContext.  'sql' takes the object's id as $1 and returns
 *		grantee oid and privilege name; names[i] is the privilege of bit
 *		1 << i, NULL-terminated, the last one implying all.
 */
CourierGrant *
courier_load_grants(const char *sql, int32 id, const char *const *names, int *ngrants)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];
	int			ret;
	int			nnames = 0;
	CourierGrant *grants;

	while (names[nnames] != NULL)
		nnames++;
	values[0] = Int32GetDatum(id);
	ret = SPI_execute_with_args(sql, 1, argtypes, values, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(ret));
	*ngrants = 0;
	grants = MemoryContextAllocZero(CacheMemoryContext, sizeof(CourierGrant) * (SPI_processed + 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		bool		isnull;
		Oid			grantee = DatumGetObjectId(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 1, &isnull));
		char	   *privilege = SPI_getvalue(tuple, SPI_tuptable->tupdesc, 2);
		int			mask = 0;
		int			j;

		for (j = 0; j < nnames; j++)
			if (strcmp(privilege, names[j]) == 0)
				mask = (j == nnames - 1) ? (1 << nnames) - 1 : 1 << j;
		for (j = 0; j < *ngrants; j++)
			if (grants[j].grantee == grantee)
				break;
		if (j == *ngrants)
		{
			grants[j].grantee = grantee;
			(*ngrants)++;
		}
		grants[j].privileges |= mask;
	}
	return grants;
}

static void
load_queue(CourierQueue *queue)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	int			ret;
	bool		isnull;
	HeapTuple	tuple;
	TupleDesc	tupdesc;

	values[0] = CStringGetTextDatum(queue->name);
	ret = SPI_execute_with_args("SELECT queue_id, visibility_timeout, delay, max_message_size,"
								"       notify, dead_letter_queue_id, max_receives,"
								"       EXISTS (SELECT FROM courier.queue s"
								"                WHERE s.dead_letter_queue_id = q.queue_id),"
								"       retry_delay, retry_backoff = 'exponential', retry_max_delay,"
								"       retry_jitter, fifo, content_dedup, dedup_window,"
								"       (SELECT d.fifo FROM courier.queue d"
								"         WHERE d.queue_id = q.dead_letter_queue_id)"
								"  FROM courier.queue q WHERE queue_name = $1",
								1, argtypes, values, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
	{
		queue->queue_id = 0;
		return;
	}
	tuple = SPI_tuptable->vals[0];
	tupdesc = SPI_tuptable->tupdesc;
	queue->queue_id = DatumGetInt32(SPI_getbinval(tuple, tupdesc, 1, &isnull));
	queue->visibility_timeout =
		interval_to_usecs(DatumGetIntervalP(SPI_getbinval(tuple, tupdesc, 2, &isnull)));
	queue->delay = interval_to_usecs(DatumGetIntervalP(SPI_getbinval(tuple, tupdesc, 3, &isnull)));
	queue->max_message_size = DatumGetInt32(SPI_getbinval(tuple, tupdesc, 4, &isnull));
	queue->notify = DatumGetBool(SPI_getbinval(tuple, tupdesc, 5, &isnull));
	queue->dead_letter_queue_id = DatumGetInt32(SPI_getbinval(tuple, tupdesc, 6, &isnull));
	if (isnull)
		queue->dead_letter_queue_id = 0;
	queue->max_receives = DatumGetInt32(SPI_getbinval(tuple, tupdesc, 7, &isnull));
	if (isnull)
		queue->max_receives = PG_INT32_MAX;
	queue->is_dead_letter_queue = DatumGetBool(SPI_getbinval(tuple, tupdesc, 8, &isnull));
	queue->retry_delay = *DatumGetIntervalP(SPI_getbinval(tuple, tupdesc, 9, &isnull));
	queue->retry_exponential = DatumGetBool(SPI_getbinval(tuple, tupdesc, 10, &isnull));
	queue->retry_max_delay = *DatumGetIntervalP(SPI_getbinval(tuple, tupdesc, 11, &isnull));
	queue->retry_jitter = DatumGetBool(SPI_getbinval(tuple, tupdesc, 12, &isnull));
	queue->fifo = DatumGetBool(SPI_getbinval(tuple, tupdesc, 13, &isnull));
	queue->content_dedup = DatumGetBool(SPI_getbinval(tuple, tupdesc, 14, &isnull));
	queue->dedup_window =
		interval_to_usecs(DatumGetIntervalP(SPI_getbinval(tuple, tupdesc, 15, &isnull)));
	queue->dead_letter_fifo = DatumGetBool(SPI_getbinval(tuple, tupdesc, 16, &isnull)) && !isnull;
	queue->groups_checked = false;
	crypto_load_queue(queue);

	queue->grants = courier_load_grants("SELECT grantee::oid, privilege FROM courier.queue_grant"
										" WHERE queue_id = $1",
										queue->queue_id, queue_privilege_names, &queue->ngrants);
}

/*
 * courier_check_name
 *		A queue name is 1-80 letters, digits, '-' or '_'.
 */
void
courier_check_name(const char *name, int len)
{
	courier_check_object_name("queue", name, len);
}

/*
 * courier_check_object_name
 *		The same rule for the names of other objects (kind: "topic", ...).
 */
void
courier_check_object_name(const char *kind, const char *name, int len)
{
	bool		ok = (len >= 1 && len <= COURIER_MAX_NAME);

	for (int i = 0; ok && i < len; i++)
	{
		char		c = name[i];

		ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			(c >= '0' && c <= '9') || c == '-' || c == '_';
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s name \"%s\"", kind, pnstrdup(name, Min(len, 200))),
				 errdetail("A %s name has 1 to %d characters, each a letter, a digit, \"-\" or \"_\".",
						   kind, COURIER_MAX_NAME)));
}

/*
 * courier_lookup_queue
 *		The cached entry of a queue, loading it if needed.
 *
 * Must be called between courier_enter() and courier_leave().  Returns NULL
 * for an unknown queue if missing_ok, else raises undefined_object.
 */
CourierQueue *
courier_lookup_queue(text *name, bool missing_ok)
{
	char		key[COURIER_MAX_NAME + 4];
	int			len = VARSIZE_ANY_EXHDR(name);
	CourierQueue *queue;
	bool		found;

	courier_check_name(VARDATA_ANY(name), len);
	memset(key, 0, sizeof(key));
	memcpy(key, VARDATA_ANY(name), len);

	if (queue_cache == NULL || queue_cache_stale)
		reset_queue_cache();

	queue = hash_search(queue_cache, key, HASH_FIND, NULL);
	if (queue == NULL)
	{
		CourierQueue loaded;

		memset(&loaded, 0, sizeof(loaded));
		memcpy(loaded.name, key, sizeof(key));
		load_queue(&loaded);
		if (loaded.queue_id == 0)
		{
			if (missing_ok)
				return NULL;
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("queue \"%s\" does not exist", key)));
		}
		/* the load may have made the cache stale: the next call rebuilds it */
		queue = hash_search(queue_cache, key, HASH_ENTER, &found);
		memcpy(queue, &loaded, sizeof(loaded));
	}
	return queue;
}

/* Whether roleid holds privilege on queue, directly or through a role it is a member of. */
bool
courier_has_privilege(Oid roleid, CourierQueue *queue, int privilege)
{
	return courier_grants_allow(roleid, queue->grants, queue->ngrants, privilege);
}

/* Whether grants give roleid privilege, directly or through membership (queues and topics). */
bool
courier_grants_allow(Oid roleid, const CourierGrant *grants, int ngrants, int privilege)
{
	if (superuser_arg(roleid))
		return true;
	for (int i = 0; i < ngrants; i++)
	{
		if ((grants[i].privileges & privilege) == privilege &&
			has_privs_of_role(roleid, grants[i].grantee))
			return true;
	}
	return false;
}

void
courier_check_privilege(CourierCall *call, CourierQueue *queue, int privilege)
{
	if (!courier_has_privilege(call->caller, queue, privilege))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for queue \"%s\"", queue->name),
				 errhint("A queue admin grants access with courier.grant('%s', role, '%s').",
						 queue->name,
						 privilege == COURIER_PRIV_SEND ? "send" :
						 privilege == COURIER_PRIV_RECEIVE ? "receive" : "admin")));
}

/*
 * courier_plan
 *		The queue's prepared plan 'which', prepared from sql_format on first use.
 *
 * sql_format names the message table as courier.q_%1$d, the lease table
 * as courier.l_%1$d, and the dead-letter queue's message table as
 * courier.q_%2$d.
 */
SPIPlanPtr
courier_plan(CourierQueue *queue, CourierPlan which, const char *sql_format,
			 int nargs, Oid *argtypes)
{
	if (queue->plans[which] == NULL)
	{
		char	   *sql = psprintf(sql_format, queue->queue_id, queue->dead_letter_queue_id);
		SPIPlanPtr	plan;

		/*
		 * Always the generic plan: the queries are simple index lookups, and a
		 * custom plan would be planned anew on every call.
		 */
		plan = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		queue->plans[which] = plan;
		pfree(sql);
	}
	return queue->plans[which];
}

/*
 * courier_execute
 *		Run a cached plan with a fresh snapshot (unless read_only); any result
 *		but 'expected' cannot happen and is an internal error.  Returns the
 *		number of rows processed.
 */
uint64
courier_execute(SPIPlanPtr plan, Datum *args, const char *nulls, bool read_only, int expected)
{
	int			ret = SPI_execute_plan(plan, args, nulls, read_only, 0);

	if (ret != expected)
		elog(ERROR, "pg_courier: unexpected SPI result %s", SPI_result_code_string(ret));
	return SPI_processed;
}

/*
 * courier_materialize
 *		Set up the result of a set-returning function in materialize mode
 *		(fname names it in the error for a context that takes no set):
 *		returns the tuplestore, its row type and the per-query memory that
 *		rows must be built in.
 */
Tuplestorestate *
courier_materialize(FunctionCallInfo fcinfo, const char *fname, TupleDesc *tupdesc,
					MemoryContext *per_query)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext oldcontext;
	Tuplestorestate *tupstore;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		(rsinfo->allowedModes & SFRM_Materialize) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s must be called in a context that accepts a set", fname)));
	*per_query = rsinfo->econtext->ecxt_per_query_memory;
	oldcontext = MemoryContextSwitchTo(*per_query);
	if (get_call_result_type(fcinfo, NULL, tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupstore = tuplestore_begin_heap(true, false, work_mem);
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = tupstore;
	rsinfo->setDesc = *tupdesc;
	MemoryContextSwitchTo(oldcontext);
	return tupstore;
}

/* An int8[] Datum holding values[0..n-1]. */
Datum
courier_int8_array(const int64 *values, int n)
{
	Datum	   *datums = palloc(sizeof(Datum) * (n + 1));
	ArrayType  *array;

	for (int i = 0; i < n; i++)
		datums[i] = Int64GetDatum(values[i]);
	array = construct_array(datums, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	pfree(datums);
	return PointerGetDatum(array);
}

/* The text argument argno, which must not be NULL. */
text *
courier_arg_text(FunctionCallInfo fcinfo, int argno, const char *what)
{
	courier_arg_notnull(fcinfo, argno, what);
	return PG_GETARG_TEXT_PP(argno);
}

void
courier_arg_notnull(FunctionCallInfo fcinfo, int argno, const char *what)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what)));
}

/*
 * courier_interval_usecs
 *		An interval argument in microseconds, checked to lie in [0, max_usecs].
 */
int64
courier_interval_usecs(Interval *interval, const char *what, int64 max_usecs)
{
	int64		usecs = interval_to_usecs(interval);

	if (usecs < 0 || usecs > max_usecs)
	{
		char	   *limit;

		int64		n;
		const char *unit;

		if (max_usecs > 0 && max_usecs % USECS_PER_HOUR == 0)
			n = max_usecs / USECS_PER_HOUR, unit = "hour";
		else if (max_usecs > 0 && max_usecs % USECS_PER_MINUTE == 0)
			n = max_usecs / USECS_PER_MINUTE, unit = "minute";
		else if (max_usecs % USECS_PER_SEC == 0)
			n = max_usecs / USECS_PER_SEC, unit = "second";
		else
			n = max_usecs / 1000, unit = "millisecond";
		limit = psprintf(INT64_FORMAT " %s%s", n, unit, n == 1 ? "" : "s");
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be between 0 and %s", what, limit)));
	}
	return usecs;
}

/*
 * courier._invalidate_cache() RETURNS trigger
 *		Statement trigger on courier.queue and courier.queue_grant: every
 *		backend drops its queue cache when this transaction commits.
 */
PG_FUNCTION_INFO_V1(courier__invalidate_cache);
Datum
courier__invalidate_cache(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "courier._invalidate_cache must be called as a trigger");
	if (!OidIsValid(catalog_relid))
		lookup_catalog();
	CacheInvalidateRelcacheByRelid(catalog_relid);
	return PointerGetDatum(NULL);
}
