/*-------------------------------------------------------------------------
 *
 * queue.c
 *	  Queue administration: courier.create_queue(), alter_queue(),
 *	  drop_queue(), purge_queue(), grant(), revoke() and
 *	  has_queue_privilege().
 *
 * Each entry point checks the caller's privilege on the queue here, then
 * runs the matching internal function of the install script
 * (courier._create_queue() and so on, which do the validation and DDL) as
 * the extension owner.  Nobody else may execute the internal functions, so
 * these checks cannot be bypassed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "courier.h"

/*
 * Runs an internal function as the owner (between courier_enter and
 * courier_leave) with the given arguments; NULL arguments are passed as SQL
 * NULLs.  Returns the first column of the result, or 0 if it is NULL.
 */
static Datum
run_internal(const char *sql, int nargs, Oid *argtypes, Datum *values, bool *isnull)
{
	char		nulls[16];
	int			ret;
	bool		resnull;
	Datum		result;

	Assert(nargs <= 16);
	for (int i = 0; i < nargs; i++)
		nulls[i] = isnull[i] ? 'n' : ' ';
	ret = SPI_execute_with_args(sql, nargs, argtypes, values, nulls, false, 0);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "pg_courier: \"%s\" failed: %s", sql, SPI_result_code_string(ret));
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &resnull);
	return resnull ? (Datum) 0 : result;
}

/* run_internal() for the other modules' entry points (topic.c). */
Datum
courier_run_internal(const char *sql, int nargs, Oid *argtypes, Datum *values, bool *isnull)
{
	return run_internal(sql, nargs, argtypes, values, isnull);
}

/* Looks the queue up and checks the caller is its admin; returns its id. */
static int32
admin_queue(CourierCall *call, text *name)
{
	CourierQueue *queue = courier_lookup_queue(name, false);

	courier_check_privilege(call, queue, COURIER_PRIV_ADMIN);
	return queue->queue_id;
}

/* create_queue and alter_queue take the same settings, in this order, after the name. */
#define QUEUE_SETTINGS 16
static Oid	settings_types[QUEUE_SETTINGS] = {
	INTERVALOID,				/* visibility_timeout */
	INTERVALOID,				/* delay */
	INTERVALOID,				/* retention */
	INT4OID,					/* max_message_size */
	BOOLOID,					/* notify */
	TEXTOID,					/* dead_letter_queue */
	INT4OID,					/* max_receives */
	INTERVALOID,				/* retry_delay */
	TEXTOID,					/* retry_backoff */
	INTERVALOID,				/* retry_max_delay */
	BOOLOID,					/* retry_jitter */
	BOOLOID,					/* durable_leases */
	BOOLOID,					/* fifo */
	BOOLOID,					/* content_dedup */
	INTERVALOID,				/* dedup_window */
	TEXTOID						/* encryption_key: a key name (crypto.c) */
};

/* Copies the settings arguments 1..QUEUE_SETTINGS into values[first...]. */
static void
settings_args(FunctionCallInfo fcinfo, Oid *types, Datum *values, bool *isnull, int first)
{
	for (int i = 0; i < QUEUE_SETTINGS; i++)
	{
		int			arg = i + 1;

		types[first + i] = settings_types[i];
		isnull[first + i] = (arg >= PG_NARGS() || PG_ARGISNULL(arg));
		values[first + i] = isnull[first + i] ? (Datum) 0 : PG_GETARG_DATUM(arg);
		if (i == 5 && !isnull[first + i])	/* dead_letter_queue: a queue name */
			courier_check_name(VARDATA_ANY(PG_GETARG_TEXT_PP(arg)),
							   VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(arg)));
	}
}

/*
 * courier.create_queue(queue_name text, visibility_timeout interval,
 *						delay interval, retention interval,
 *						max_message_size integer, notify boolean,
 *						dead_letter_queue text, max_receives integer,
 *						retry_delay interval, retry_backoff text,
 *						retry_max_delay interval, retry_jitter boolean,
 *						durable_leases boolean, fifo boolean,
 *						content_dedup boolean, dedup_window interval,
 *						encryption_key text)
 *	 RETURNS void
 *		Create a queue; a caller who is not a superuser becomes its admin.
 *
 * Who may create queues is decided by EXECUTE on this function.
 */
PG_FUNCTION_INFO_V1(courier_create_queue);
Datum
courier_create_queue(PG_FUNCTION_ARGS)
{
	Oid			argtypes[QUEUE_SETTINGS + 2];
	Datum		values[QUEUE_SETTINGS + 2];
	bool		isnull[QUEUE_SETTINGS + 2];
	text	   *name = courier_arg_text(fcinfo, 0, "queue name");
	CourierCall call;

	courier_check_name(VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name));
	argtypes[0] = TEXTOID;
	values[0] = PointerGetDatum(name);
	isnull[0] = false;
	settings_args(fcinfo, argtypes, values, isnull, 1);
	courier_enter(&call);
	if (courier_lookup_queue(name, true) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("queue \"%s\" already exists", text_to_cstring(name))));
	argtypes[QUEUE_SETTINGS + 1] = REGROLEOID;
	values[QUEUE_SETTINGS + 1] = ObjectIdGetDatum(call.caller);
	isnull[QUEUE_SETTINGS + 1] = superuser_arg(call.caller);
	run_internal("SELECT courier._create_queue($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
				 " $11, $12, $13, $14, $15, $16, $17, $18)",
				 QUEUE_SETTINGS + 2, argtypes, values, isnull);
	courier_leave(&call);
	PG_RETURN_VOID();
}

/*
 * courier.alter_queue(queue_name text, <the settings of create_queue>)
 *	 RETURNS void
 *		Change the settings given (not NULL); needs admin on the queue.
 *		max_receives => 0 removes the redrive policy.
 */
PG_FUNCTION_INFO_V1(courier_alter_queue);
Datum
courier_alter_queue(PG_FUNCTION_ARGS)
{
	Oid			argtypes[QUEUE_SETTINGS + 1];
	Datum		values[QUEUE_SETTINGS + 1];
	bool		isnull[QUEUE_SETTINGS + 1];
	text	   *name = courier_arg_text(fcinfo, 0, "queue name");
	CourierCall call;

	settings_args(fcinfo, argtypes, values, isnull, 1);
	courier_enter(&call);
	argtypes[0] = INT4OID;
	values[0] = Int32GetDatum(admin_queue(&call, name));
	isnull[0] = false;
	run_internal("SELECT courier._alter_queue($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
				 " $11, $12, $13, $14, $15, $16, $17)",
				 QUEUE_SETTINGS + 1, argtypes, values, isnull);
	courier_leave(&call);
	PG_RETURN_VOID();
}

/*
 * courier.drop_queue(queue_name text, force boolean) RETURNS void
 *		Drop a queue with its messages and grants; needs admin on it.  A
 *		queue that is another queue's dead-letter queue is only dropped with
 *		force, which removes those redrive policies.
 */
PG_FUNCTION_INFO_V1(courier_drop_queue);
Datum
courier_drop_queue(PG_FUNCTION_ARGS)
{
	Oid			argtypes[2] = {INT4OID, BOOLOID};
	Datum		values[2];
	bool		isnull[2] = {false, false};
	text	   *name = courier_arg_text(fcinfo, 0, "queue name");
	CourierCall call;

	values[1] = BoolGetDatum(PG_NARGS() > 1 && !PG_ARGISNULL(1) && PG_GETARG_BOOL(1));
	courier_enter(&call);
	values[0] = Int32GetDatum(admin_queue(&call, name));
	run_internal("SELECT courier._drop_queue($1, $2)", 2, argtypes, values, isnull);
	courier_leave(&call);
	PG_RETURN_VOID();
}

/*
 * courier.redrive(dead_letter_queue text, to_queue text, max_messages integer)
 *	 RETURNS bigint
 *		Move messages of a dead-letter queue back to the queues they came
 *		from (or to to_queue), in their original order; returns how many
 *		moved.  Needs admin on the dead-letter queue and send on to_queue.
 */
PG_FUNCTION_INFO_V1(courier_redrive);
Datum
courier_redrive(PG_FUNCTION_ARGS)
{
	Oid			argtypes[3] = {INT4OID, INT4OID, INT4OID};
	Datum		values[3];
	bool		isnull[3] = {false, true, true};
	text	   *name = courier_arg_text(fcinfo, 0, "dead-letter queue name");
	CourierCall call;
	CourierQueue *dlq;
	int64		moved;

	if (!PG_ARGISNULL(2))
	{
		values[2] = PG_GETARG_DATUM(2);
		isnull[2] = false;
	}
	courier_enter(&call);
	dlq = courier_lookup_queue(name, false);
	courier_check_privilege(&call, dlq, COURIER_PRIV_ADMIN);
	if (!dlq->is_dead_letter_queue && PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("queue \"%s\" is not a dead-letter queue", dlq->name),
				 errdetail("No queue names it as its dead_letter_queue."),
				 errhint("Pass to_queue to move its messages to another queue.")));
	values[0] = Int32GetDatum(dlq->queue_id);
	if (!PG_ARGISNULL(1))
	{
		/* a second lookup may rebuild the cache: dlq is not to be used after it */
		CourierQueue *target = courier_lookup_queue(PG_GETARG_TEXT_PP(1), false);

		courier_check_privilege(&call, target, COURIER_PRIV_SEND);
		if (target->queue_id == DatumGetInt32(values[0]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("cannot redrive queue \"%s\" into itself", target->name)));
		values[1] = Int32GetDatum(target->queue_id);
		isnull[1] = false;
	}
	moved = DatumGetInt64(run_internal("SELECT courier._redrive($1, $2, $3)",
									   3, argtypes, values, isnull));
	courier_leave(&call);
	PG_RETURN_INT64(moved);
}

/*
 * courier.purge_queue(queue_name text) RETURNS bigint
 *		Delete every message of a queue (TRUNCATE); returns how many there
 *		were.  Takes an ACCESS EXCLUSIVE lock on the queue's tables.
 */
PG_FUNCTION_INFO_V1(courier_purge_queue);
Datum
courier_purge_queue(PG_FUNCTION_ARGS)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];
	bool		isnull[1] = {false};
	text	   *name = courier_arg_text(fcinfo, 0, "queue name");
	CourierCall call;
	int64		removed;

	courier_enter(&call);
	values[0] = Int32GetDatum(admin_queue(&call, name));
	removed = DatumGetInt64(run_internal("SELECT courier._purge_queue($1)",
										 1, argtypes, values, isnull));
	courier_leave(&call);
	PG_RETURN_INT64(removed);
}

/* Shared by grant and revoke: privilege may be NULL only for revoke. */
static void
change_grant(FunctionCallInfo fcinfo, const char *internal)
{
	Oid			argtypes[3] = {INT4OID, REGROLEOID, TEXTOID};
	Datum		values[3];
	bool		isnull[3] = {false, false, false};
	text	   *name = courier_arg_text(fcinfo, 0, "queue name");
	CourierCall call;

	courier_arg_notnull(fcinfo, 1, "role");
	values[1] = PG_GETARG_DATUM(1);
	values[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	isnull[2] = PG_ARGISNULL(2);
	courier_enter(&call);
	values[0] = Int32GetDatum(admin_queue(&call, name));
	run_internal(internal, 3, argtypes, values, isnull);
	courier_leave(&call);
}

/*
 * courier.grant(queue_name text, role_name regrole, privilege text) RETURNS void
 *		Allow a role to send to, receive from, or administer a queue; needs
 *		admin on the queue.
 */
PG_FUNCTION_INFO_V1(courier_grant);
Datum
courier_grant(PG_FUNCTION_ARGS)
{
	courier_arg_notnull(fcinfo, 2, "privilege");
	change_grant(fcinfo, "SELECT courier._grant($1, $2, $3)");
	PG_RETURN_VOID();
}

/*
 * courier.revoke(queue_name text, role_name regrole, privilege text) RETURNS void
 *		Take a privilege (NULL: all) on a queue away from a role.
 */
PG_FUNCTION_INFO_V1(courier_revoke);
Datum
courier_revoke(PG_FUNCTION_ARGS)
{
	change_grant(fcinfo, "SELECT courier._revoke($1, $2, $3)");
	PG_RETURN_VOID();
}

/*
 * courier.has_queue_privilege(queue_name text, privilege text) RETURNS boolean
 *		Whether the current user holds privilege ('send', 'receive' or
 *		'admin') on the queue.
 */
PG_FUNCTION_INFO_V1(courier_has_queue_privilege);
Datum
courier_has_queue_privilege(PG_FUNCTION_ARGS)
{
	text	   *name = courier_arg_text(fcinfo, 0, "queue name");
	char	   *privilege = text_to_cstring(courier_arg_text(fcinfo, 1, "privilege"));
	int			mask;
	CourierCall call;
	CourierQueue *queue;
	bool		result;

	if (strcmp(privilege, "send") == 0)
		mask = COURIER_PRIV_SEND;
	else if (strcmp(privilege, "receive") == 0)
		mask = COURIER_PRIV_RECEIVE;
	else if (strcmp(privilege, "admin") == 0)
		mask = COURIER_PRIV_ADMIN;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unrecognized queue privilege \"%s\"", privilege),
				 errhint("Valid privileges are send, receive and admin.")));
	courier_enter(&call);
	queue = courier_lookup_queue(name, false);
	result = courier_has_privilege(call.caller, queue, mask);
	courier_leave(&call);
	PG_RETURN_BOOL(result);
}
