/*-------------------------------------------------------------------------
 *
 * stream.c
 *	  Streams: courier.create_stream(), drop_stream(), grant_stream(),
 *	  revoke_stream(), has_stream_privilege(), append() and append_batch(),
 *	  and the backend-local stream cache they and streamread.c share.
 *
 * An append is one INSERT, through a cached plan, into the table of the
 * current time slot (courier.s_<id>_<slot>, a partition of courier.s_<id>:
 * inserting there directly saves setting up tuple routing per statement),
 * in the caller's transaction.  It writes no row but its own and takes no lock but the
 * INSERT's, so concurrent appenders never wait on each other, not even on
 * one partition: the position of a row is derived from its transaction's
 * top-level xid (stream.h), not from a counter that appenders would share.
 * Positions are therefore ordered by transaction start, not by commit;
 * streamread.c reads them so that a late commit is never skipped.
 *
 * A key maps to partition 1 + FNV-1a-64(key bytes) mod partitions: a fixed,
 * documented function, stable across restarts, versions and platforms.
 * Appends without a key go round robin per backend, from a start that
 * differs between backends.
 *
 * The stream cache mirrors catalog.c's queue cache: settings, grants, groups
 * and plans per stream in CacheMemoryContext; any change to courier.stream,
 * courier.stream_grant or courier.stream_group fires a statement trigger
 * that invalidates the relcache entry of courier.stream, and this file's
 * callback then marks the cache stale.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "stream.h"

static HTAB *stream_cache = NULL;
static bool stream_cache_stale = false;
static Oid	stream_relid = InvalidOid;
static bool stream_callback_registered = false;

/* Positions handed out in the current top-level transaction. */
static FullTransactionId position_fxid;
static int64 position_count = 0;

static void
stream_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == stream_relid)
	{
		stream_cache_stale = true;
		stream_relid = InvalidOid;
	}
}

static void
lookup_stream_relid(void)
{
	if (!stream_callback_registered)
	{
		CacheRegisterRelcacheCallback(stream_relcache_callback, (Datum) 0);
		stream_callback_registered = true;
	}
	stream_relid = get_relname_relid("stream", get_namespace_oid("courier", false));
	if (!OidIsValid(stream_relid))
		elog(ERROR, "pg_courier catalog table courier.stream is missing");
}

static void
reset_stream_cache(void)
{
	HASH_SEQ_STATUS status;
	CourierStream *stream;
	HASHCTL		ctl;

	if (stream_cache != NULL)
	{
		hash_seq_init(&status, stream_cache);
		while ((stream = hash_seq_search(&status)) != NULL)
		{
			for (int i = 0; i < NUM_STREAM_PLANS; i++)
				if (stream->plans[i] != NULL)
					SPI_freeplan(stream->plans[i]);
			if (stream->grants != NULL)
				pfree(stream->grants);
			if (stream->groups != NULL)
				pfree(stream->groups);
		}
		hash_destroy(stream_cache);
	}
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = COURIER_MAX_NAME + 4;
	ctl.entrysize = sizeof(CourierStream);
	ctl.hcxt = CacheMemoryContext;
	stream_cache = hash_create("pg_courier streams", 64, &ctl,
							   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	stream_cache_stale = false;
}

/* Names of the stream privilege bits, admin (which implies the others) last. */
static const char *const stream_privilege_names[] = {"append", "read", "admin", NULL};

static void
load_stream(CourierStream *stream)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;
	HeapTuple	tuple;
	TupleDesc	tupdesc;
	int			ret;

	values[0] = CStringGetTextDatum(stream->name);
	ret = SPI_execute_with_args("SELECT stream_id, partitions,"
								"       (extract(epoch FROM courier._stream_segment(retention))"
								"        * 1000000)::bigint, max_message_size"
								"  FROM courier.stream WHERE stream_name = $1",
								1, argtypes, values, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
	{
		stream->stream_id = 0;
		return;
	}
	tuple = SPI_tuptable->vals[0];
	tupdesc = SPI_tuptable->tupdesc;
	stream->stream_id = DatumGetInt32(SPI_getbinval(tuple, tupdesc, 1, &isnull));
	stream->partitions = DatumGetInt32(SPI_getbinval(tuple, tupdesc, 2, &isnull));
	stream->segment_us = DatumGetInt64(SPI_getbinval(tuple, tupdesc, 3, &isnull));
	stream->max_message_size = DatumGetInt32(SPI_getbinval(tuple, tupdesc, 4, &isnull));
	stream->next_partition = (uint32) MyProcPid;

	stream->grants = courier_load_grants("SELECT grantee::oid, privilege FROM courier.stream_grant"
										 " WHERE stream_id = $1",
										 stream->stream_id, stream_privilege_names,
										 &stream->ngrants);

	argtypes[0] = INT4OID;
	values[0] = Int32GetDatum(stream->stream_id);
	ret = SPI_execute_with_args("SELECT group_name, group_id FROM courier.stream_group"
								" WHERE stream_id = $1",
								1, argtypes, values, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(ret));
	stream->ngroups = (int) SPI_processed;
	stream->groups = MemoryContextAllocZero(CacheMemoryContext,
											sizeof(StreamGroup) * (SPI_processed + 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		tuple = SPI_tuptable->vals[i];
		strlcpy(stream->groups[i].name, SPI_getvalue(tuple, SPI_tuptable->tupdesc, 1),
				sizeof(stream->groups[i].name));
		stream->groups[i].group_id =
			DatumGetInt32(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 2, &isnull));
	}
}

/* A stream or group name ('what'): as a queue name (courier_check_object_name). */
void
stream_check_name(const char *what, text *name)
{
	courier_check_object_name(what, VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name));
}

/*
 * stream_lookup
 *		The cached entry of a stream, loaded if needed.  Between
 *		courier_enter() and courier_leave().  NULL for an unknown stream if
 *		missing_ok, else undefined_object.
 */
CourierStream *
stream_lookup(text *name, bool missing_ok)
{
	char		key[COURIER_MAX_NAME + 4];
	CourierStream *stream;
	bool		found;

	stream_check_name("stream", name);
	memset(key, 0, sizeof(key));
	memcpy(key, VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name));

	if (!OidIsValid(stream_relid))
		lookup_stream_relid();
	if (stream_cache == NULL || stream_cache_stale)
		reset_stream_cache();

	stream = hash_search(stream_cache, key, HASH_FIND, NULL);
	if (stream == NULL)
	{
		CourierStream loaded;

		memset(&loaded, 0, sizeof(loaded));
		memcpy(loaded.name, key, sizeof(key));
		load_stream(&loaded);
		if (loaded.stream_id == 0)
		{
			if (missing_ok)
				return NULL;
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("stream \"%s\" does not exist", key)));
		}
		stream = hash_search(stream_cache, key, HASH_ENTER, &found);
		memcpy(stream, &loaded, sizeof(loaded));
	}
	return stream;
}

static bool
stream_has_privilege(Oid roleid, CourierStream *stream, int privilege)
{
	return courier_grants_allow(roleid, stream->grants, stream->ngrants, privilege);
}

void
stream_check_privilege(CourierCall *call, CourierStream *stream, int privilege)
{
	if (!stream_has_privilege(call->caller, stream, privilege))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for stream \"%s\"", stream->name),
				 errhint("A stream admin grants access with courier.grant_stream('%s', role, '%s').",
						 stream->name,
						 privilege == STREAM_PRIV_APPEND ? "append" :
						 privilege == STREAM_PRIV_READ ? "read" : "admin")));
}

/*
 * stream_plan
 *		The stream's prepared plan 'which' (+ slot, for the plans kept per
 *		slot), prepared from sql_format on first use.  sql_format names the
 *		data table as courier.s_%1$d and a slot's table as
 *		courier.s_%1$d_%2$d.
 */
SPIPlanPtr
stream_plan(CourierStream *stream, int which, int slot, const char *sql_format,
			int nargs, Oid *argtypes)
{
	which += slot;
	Assert(which >= 0 && which < NUM_STREAM_PLANS);
	if (stream->plans[which] == NULL)
	{
		char	   *sql = psprintf(sql_format, stream->stream_id, slot);
		SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		stream->plans[which] = plan;
		pfree(sql);
	}
	return stream->plans[which];
}

/*
 * stream_group_id
 *		The id of a consumer group of the stream: from the cache, else from
 *		the catalog (a group created since this transaction began).  0 for
 *		an unknown group if missing_ok, else undefined_object.
 */
int32
stream_group_id(CourierStream *stream, text *group, bool missing_ok)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[2] = {INT4OID, TEXTOID};
	Datum		args[2];
	char	   *name;

	stream_check_name("group", group);
	name = text_to_cstring(group);
	for (int i = 0; i < stream->ngroups; i++)
		if (strcmp(stream->groups[i].name, name) == 0)
			return stream->groups[i].group_id;

	if (plan == NULL)
	{
		plan = SPI_prepare("SELECT group_id FROM courier.stream_group"
						   " WHERE stream_id = $1 AND group_name = $2", 2, argtypes);
		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	}
	args[0] = Int32GetDatum(stream->stream_id);
	args[1] = PointerGetDatum(group);
	if (courier_execute(plan, args, NULL, false, SPI_OK_SELECT) == 1)
	{
		bool		isnull;

		return DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	if (missing_ok)
		return 0;
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("consumer group \"%s\" of stream \"%s\" does not exist", name, stream->name),
			 errhint("Create it with courier.create_group('%s', '%s').", stream->name, name)));
	pg_unreachable();
}

/*
 * courier.create_stream(stream_name text, partitions integer,
 *						 retention interval, max_message_size integer)
 *	 RETURNS void
 *		Create a stream; a caller who is not a superuser becomes its admin.
 *		Who may create streams is decided by EXECUTE on this function.
 */
PG_FUNCTION_INFO_V1(courier_create_stream);
Datum
courier_create_stream(PG_FUNCTION_ARGS)
{
	Oid			argtypes[5] = {TEXTOID, INT4OID, INTERVALOID, INT4OID, REGROLEOID};
	Datum		values[5];
	bool		isnull[5];
	text	   *name = courier_arg_text(fcinfo, 0, "stream name");
	CourierCall call;

	stream_check_name("stream", name);
	for (int i = 0; i < 4; i++)
	{
		isnull[i] = PG_ARGISNULL(i);
		values[i] = isnull[i] ? (Datum) 0 : PG_GETARG_DATUM(i);
	}
	courier_enter(&call);
	if (stream_lookup(name, true) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("stream \"%s\" already exists", text_to_cstring(name))));
	values[4] = ObjectIdGetDatum(call.caller);
	isnull[4] = superuser_arg(call.caller);
	(void) courier_run_internal("SELECT courier._create_stream($1, $2, $3, $4, $5)",
							   5, argtypes, values, isnull);
	courier_leave(&call);
	PG_RETURN_VOID();
}

/*
 * courier.drop_stream(stream_name text) RETURNS void
 *		Drop a stream with its data, groups and grants.  Needs admin.  Takes
 *		an ACCESS EXCLUSIVE lock on the data table: waits for appenders and
 *		readers in progress.
 */
PG_FUNCTION_INFO_V1(courier_drop_stream);
Datum
courier_drop_stream(PG_FUNCTION_ARGS)
{
	text	   *name = courier_arg_text(fcinfo, 0, "stream name");
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];
	bool		isnull[1] = {false};
	CourierCall call;
	CourierStream *stream;

	courier_enter(&call);
	stream = stream_lookup(name, false);
	stream_check_privilege(&call, stream, STREAM_PRIV_ADMIN);
	values[0] = Int32GetDatum(stream->stream_id);
	(void) courier_run_internal("SELECT courier._drop_stream($1)", 1, argtypes, values, isnull);
	courier_leave(&call);
	PG_RETURN_VOID();
}

/* grant_stream and revoke_stream: admin of the stream, then the internal function. */
static void
grant_or_revoke(FunctionCallInfo fcinfo, const char *sql)
{
	text	   *name = courier_arg_text(fcinfo, 0, "stream name");
	Oid			argtypes[3] = {INT4OID, REGROLEOID, TEXTOID};
	Datum		values[3];
	bool		isnull[3] = {false, false, false};
	CourierCall call;
	CourierStream *stream;

	courier_arg_notnull(fcinfo, 1, "role_name");
	values[1] = PG_GETARG_DATUM(1);
	isnull[2] = PG_ARGISNULL(2);
	values[2] = isnull[2] ? (Datum) 0 : PG_GETARG_DATUM(2);
	courier_enter(&call);
	stream = stream_lookup(name, false);
	stream_check_privilege(&call, stream, STREAM_PRIV_ADMIN);
	values[0] = Int32GetDatum(stream->stream_id);
	(void) courier_run_internal(sql, 3, argtypes, values, isnull);
	courier_leave(&call);
}

/*
 * courier.grant_stream(stream_name text, role_name regrole, privilege text)
 *	 RETURNS void
 *		Give a role append, read or admin on a stream.  Needs admin.
 */
PG_FUNCTION_INFO_V1(courier_grant_stream);
Datum
courier_grant_stream(PG_FUNCTION_ARGS)
{
	grant_or_revoke(fcinfo, "SELECT courier._stream_grant($1, $2, $3)");
	PG_RETURN_VOID();
}

/*
 * courier.revoke_stream(stream_name text, role_name regrole, privilege text)
 *	 RETURNS void
 *		Take one privilege (or all: NULL) on a stream away.  Needs admin.
 */
PG_FUNCTION_INFO_V1(courier_revoke_stream);
Datum
courier_revoke_stream(PG_FUNCTION_ARGS)
{
	grant_or_revoke(fcinfo, "SELECT courier._stream_revoke($1, $2, $3)");
	PG_RETURN_VOID();
}

/*
 * courier.has_stream_privilege(stream_name text, privilege text)
 *	 RETURNS boolean
 *		Whether the current role holds the privilege on the stream.
 */
PG_FUNCTION_INFO_V1(courier_has_stream_privilege);
Datum
courier_has_stream_privilege(PG_FUNCTION_ARGS)
{
	text	   *name = courier_arg_text(fcinfo, 0, "stream name");
	char	   *privilege = text_to_cstring(courier_arg_text(fcinfo, 1, "privilege"));
	CourierCall call;
	CourierStream *stream;
	int			mask;
	bool		result;

	if (strcmp(privilege, "append") == 0)
		mask = STREAM_PRIV_APPEND;
	else if (strcmp(privilege, "read") == 0)
		mask = STREAM_PRIV_READ;
	else if (strcmp(privilege, "admin") == 0)
		mask = STREAM_PRIV_ADMIN;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unrecognized stream privilege \"%s\"", privilege),
				 errhint("Valid privileges are append, read and admin.")));
	courier_enter(&call);
	stream = stream_lookup(name, false);
	result = stream_has_privilege(call.caller, stream, mask);
	courier_leave(&call);
	PG_RETURN_BOOL(result);
}

/*
 * Attributes follow the rules of queue messages (send.c): a JSON object of
 * at most COURIER_MAX_ATTRIBUTES keys of 1-256 characters, with string,
 * number or boolean values.
 */
static void
stream_check_attributes(Jsonb *attributes)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		ok;

	if (!JB_ROOT_IS_OBJECT(attributes) || JB_ROOT_IS_SCALAR(attributes))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("message attributes must be a JSON object")));
	ok = JB_ROOT_COUNT(attributes) <= COURIER_MAX_ATTRIBUTES;
	it = JsonbIteratorInit(&attributes->root);
	while (ok && (tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			ok = v.val.string.len >= 1 && v.val.string.len <= COURIER_MAX_ATTRIBUTE_KEY;
		else if (tok == WJB_VALUE)
			ok = v.type == jbvString || v.type == jbvNumeric || v.type == jbvBool;
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid message attributes"),
				 errdetail("Attributes are at most %d names of 1 to %d characters, each with a string, number or boolean value.",
						   COURIER_MAX_ATTRIBUTES, COURIER_MAX_ATTRIBUTE_KEY)));
}

static void
stream_check_body_size(CourierStream *stream, Datum body)
{
	Size		size = toast_raw_datum_size(body) - VARHDRSZ;

	if (size > (Size) stream->max_message_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("message is too large for stream \"%s\"", stream->name),
				 errdetail("The body has %zu bytes; the stream's max_message_size is %d bytes.",
						   size, stream->max_message_size)));
}

/* FNV-1a, 64 bits: the documented key-to-partition function. */
static uint64
stream_key_hash(const char *key, int len)
{
	uint64		h = UINT64CONST(14695981039346656037);

	for (int i = 0; i < len; i++)
	{
		h ^= (unsigned char) key[i];
		h *= UINT64CONST(1099511628211);
	}
	return h;
}

/* The partition (1-based) of a key, or the next one round robin for NULL. */
static int32
stream_partition(CourierStream *stream, text *key)
{
	if (key == NULL)
		return (int32) (stream->next_partition++ % (uint32) stream->partitions) + 1;
	return (int32) (stream_key_hash(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key)) %
					(uint64) stream->partitions) + 1;
}

/*
 * The next position of this transaction (assigning its xid if it has none).
 * Count and xid range are checked here, so a position always fits.
 */
static int64
stream_next_position(void)
{
	FullTransactionId fxid = GetTopFullTransactionId();
	uint64		xid8 = U64FromFullTransactionId(fxid);

	if (!FullTransactionIdEquals(fxid, position_fxid))
	{
		position_fxid = fxid;
		position_count = 0;
	}
	if (xid8 >= (uint64) STREAM_MAX_XID8)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("transaction id " UINT64_FORMAT " is too large for stream positions", xid8)));
	if (position_count >= STREAM_MAX_PER_XACT)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a transaction can append at most " INT64_FORMAT " messages to streams",
						STREAM_MAX_PER_XACT)));
	return STREAM_XACT_START(xid8) + position_count++;
}

/* The slot (data table) of a row appended at 'now'. */
static int16
stream_slot(CourierStream *stream, TimestampTz now)
{
	int64		segment = now / stream->segment_us;

	return (int16) (((segment % STREAM_SLOTS) + STREAM_SLOTS) % STREAM_SLOTS);
}

/*
 * courier.append(stream_name text, body jsonb|text|bytea, key text,
 *				  attributes jsonb) RETURNS bigint
 *		Append one message in the caller's transaction; returns its position.
 *
 * Takes only the locks of an INSERT into the stream's data table.
 */
PG_FUNCTION_INFO_V1(courier_append);
Datum
courier_append(PG_FUNCTION_ARGS)
{
	static Oid	argtypes[9] = {INT2OID, INT2OID, INT8OID, TIMESTAMPTZOID, TEXTOID, JSONBOID,
	TEXTOID, BYTEAOID, JSONBOID};
	text	   *name = courier_arg_text(fcinfo, 0, "stream name");
	text	   *key = PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2);
	Jsonb	   *attributes = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	int			column;
	Datum		values[9];
	char		nulls[9] = {' ', ' ', ' ', ' ', 'n', 'n', 'n', 'n', 'n'};
	CourierCall call;
	CourierStream *stream;
	TimestampTz now;
	int64		position;
	int16		slot;
	SPIPlanPtr	plan;

	courier_arg_notnull(fcinfo, 1, "message body");
	column = courier_body_column(get_fn_expr_argtype(fcinfo->flinfo, 1));
	if (attributes != NULL)
		stream_check_attributes(attributes);

	courier_enter(&call);
	stream = stream_lookup(name, false);
	stream_check_privilege(&call, stream, STREAM_PRIV_APPEND);
	stream_check_body_size(stream, PG_GETARG_DATUM(1));

	now = GetCurrentTimestamp();
	position = stream_next_position();
	slot = stream_slot(stream, now);
	values[0] = Int16GetDatum(slot);
	values[1] = Int16GetDatum((int16) stream_partition(stream, key));
	values[2] = Int64GetDatum(position);
	values[3] = TimestampTzGetDatum(now);
	if (key != NULL)
	{
		values[4] = PointerGetDatum(key);
		nulls[4] = ' ';
	}
	values[5 + column] = PG_GETARG_DATUM(1);
	nulls[5 + column] = ' ';
	if (attributes != NULL)
	{
		values[8] = JsonbPGetDatum(attributes);
		nulls[8] = ' ';
	}
	/* straight into the slot's table: no tuple routing to set up per statement */
	plan = stream_plan(stream, SPLAN_APPEND, slot,
					   "INSERT INTO courier.s_%1$d_%2$d"
					   " (slot, part, position, appended_at, key, body, body_text, body_bytes,"
					   "  attributes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
					   9, argtypes);
	if (courier_execute(plan, values, nulls, false, SPI_OK_INSERT) != 1)
		elog(ERROR, "pg_courier: append inserted " UINT64_FORMAT " rows", SPI_processed);
	wait_signal_queue_id(-stream->stream_id, false, WAKE_ON_COMMIT);
	courier_leave(&call);
	PG_RETURN_INT64(position);
}

/*
 * courier.append_batch(stream_name text, bodies jsonb[]|text[]|bytea[],
 *						keys text[], attributes jsonb[]) RETURNS bigint[]
 *		Append many messages in one INSERT; returns their positions in the
 *		order of bodies, which is also their order in the stream.  keys and
 *		attributes, if given, have one element (or NULL) per body.  Every
 *		element is checked before anything is written.
 */
PG_FUNCTION_INFO_V1(courier_append_batch);
Datum
courier_append_batch(PG_FUNCTION_ARGS)
{
	static Oid	argtypes[9] = {INT2OID, TIMESTAMPTZOID, INT2ARRAYOID, INT8ARRAYOID, TEXTARRAYOID,
	JSONBARRAYOID, TEXTARRAYOID, BYTEAARRAYOID, JSONBARRAYOID};
	text	   *name = courier_arg_text(fcinfo, 0, "stream name");
	ArrayType  *bodies;
	int			column;
	Datum	   *body_values;
	bool	   *body_nulls;
	int			nbodies;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *key_values = NULL;
	bool	   *key_nulls = NULL;
	int			nkeys = 0;
	int16	   *parts;
	int64	   *positions;
	Datum	   *part_datums;
	Datum		values[9];
	char		nulls[9] = {' ', ' ', ' ', ' ', 'n', 'n', 'n', 'n', 'n'};
	CourierCall call;
	CourierStream *stream;
	TimestampTz now;
	int16		slot;
	SPIPlanPtr	plan;

	courier_arg_notnull(fcinfo, 1, "message bodies");
	bodies = PG_GETARG_ARRAYTYPE_P(1);
	column = courier_body_column(ARR_ELEMTYPE(bodies));
	if (ARR_NDIM(bodies) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("message bodies must be a one-dimensional array")));
	get_typlenbyvalalign(ARR_ELEMTYPE(bodies), &typlen, &typbyval, &typalign);
	deconstruct_array(bodies, ARR_ELEMTYPE(bodies), typlen, typbyval, typalign,
					  &body_values, &body_nulls, &nbodies);
	for (int i = 0; i < nbodies; i++)
		if (body_nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("message body must not be null"),
					 errdetail("Element %d of the bodies array is null.", i + 1)));
	if (!PG_ARGISNULL(2))
	{
		ArrayType  *keys = PG_GETARG_ARRAYTYPE_P(2);

		deconstruct_array(keys, TEXTOID, -1, false, TYPALIGN_INT, &key_values, &key_nulls, &nkeys);
		if (ARR_NDIM(keys) > 1 || nkeys != nbodies)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("keys array must have one element per message body"),
					 errdetail("There are %d bodies and %d keys.", nbodies, nkeys)));
		values[4] = PointerGetDatum(keys);
		nulls[4] = ' ';
	}
	if (!PG_ARGISNULL(3))
	{
		ArrayType  *attributes = PG_GETARG_ARRAYTYPE_P(3);
		Datum	   *attr_values;
		bool	   *attr_nulls;
		int			nattrs;

		deconstruct_array(attributes, JSONBOID, -1, false, TYPALIGN_INT,
						  &attr_values, &attr_nulls, &nattrs);
		if (ARR_NDIM(attributes) > 1 || nattrs != nbodies)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("attributes array must have one element per message body"),
					 errdetail("There are %d bodies and %d attribute sets.", nbodies, nattrs)));
		for (int i = 0; i < nattrs; i++)
			if (!attr_nulls[i])
				stream_check_attributes(DatumGetJsonbP(attr_values[i]));
		values[8] = PointerGetDatum(attributes);
		nulls[8] = ' ';
	}

	/* allocated here: SPI_finish frees what is allocated while connected */
	parts = palloc(sizeof(int16) * (nbodies + 1));
	positions = palloc(sizeof(int64) * (nbodies + 1));
	part_datums = palloc(sizeof(Datum) * (nbodies + 1));

	courier_enter(&call);
	stream = stream_lookup(name, false);
	stream_check_privilege(&call, stream, STREAM_PRIV_APPEND);
	for (int i = 0; i < nbodies; i++)
		stream_check_body_size(stream, body_values[i]);
	if (nbodies == 0)
	{
		courier_leave(&call);
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(INT8OID));
	}

	now = GetCurrentTimestamp();
	for (int i = 0; i < nbodies; i++)
	{
		text	   *key = (key_values == NULL || key_nulls[i]) ? NULL : DatumGetTextPP(key_values[i]);

		parts[i] = (int16) stream_partition(stream, key);
		part_datums[i] = Int16GetDatum(parts[i]);
		positions[i] = stream_next_position();
	}
	slot = stream_slot(stream, now);
	values[0] = Int16GetDatum(slot);
	values[1] = TimestampTzGetDatum(now);
	values[2] = PointerGetDatum(construct_array(part_datums, nbodies, INT2OID, 2, true,
												TYPALIGN_SHORT));
	values[3] = courier_int8_array(positions, nbodies);
	values[5 + column] = PointerGetDatum(bodies);
	nulls[5 + column] = ' ';

	plan = stream_plan(stream, SPLAN_APPEND_BATCH, slot,
					   "INSERT INTO courier.s_%1$d_%2$d"
					   " (slot, part, position, appended_at, key, body, body_text, body_bytes,"
					   "  attributes)"
					   " SELECT $1, b.p, b.n, $2, b.k, b.j, b.t, b.y, b.a"
					   "   FROM ROWS FROM (pg_catalog.unnest($3), pg_catalog.unnest($4),"
					   "                   pg_catalog.unnest($5), pg_catalog.unnest($6),"
					   "                   pg_catalog.unnest($7), pg_catalog.unnest($8),"
					   "                   pg_catalog.unnest($9)) AS b(p, n, k, j, t, y, a)",
					   9, argtypes);
	if (courier_execute(plan, values, nulls, false, SPI_OK_INSERT) != (uint64) nbodies)
		elog(ERROR, "pg_courier: append_batch inserted " UINT64_FORMAT " rows", SPI_processed);
	wait_signal_queue_id(-stream->stream_id, false, WAKE_ON_COMMIT);
	courier_leave(&call);
	PG_RETURN_DATUM(courier_int8_array(positions, nbodies));
}

/*
 * courier._invalidate_stream_cache() RETURNS trigger
 *		Statement trigger on courier.stream, stream_grant and stream_group:
 *		every backend drops its stream cache when this transaction commits.
 */
PG_FUNCTION_INFO_V1(courier__invalidate_stream_cache);
Datum
courier__invalidate_stream_cache(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "courier._invalidate_stream_cache must be called as a trigger");
	if (!OidIsValid(stream_relid))
		lookup_stream_relid();
	CacheInvalidateRelcacheByRelid(stream_relid);
	return PointerGetDatum(NULL);
}
