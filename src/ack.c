/*-------------------------------------------------------------------------
 *
 * ack.c
 *	  courier.ack(), courier.ack_batch(), courier.change_visibility(),
 *	  courier.release(): what a consumer does with a message it holds; and
 *	  the message lock they share with receive.c.
 *
 * A receipt is "<msg_id in hex>.<lease token in hex>".  The token is random
 * and changes with every delivery, so a receipt is stale as soon as the
 * message was received again (or acknowledged, or released).
 *
 * The message lock is a transaction-level lock on an advisory-type tag
 * (database, message id, COURIER_LOCKTAG_MESSAGE) that no pg_advisory_*
 * call can produce (those use 1 and 2 in the last field).  receive only
 * tries it; ack, change_visibility and release wait for it, in ascending
 * message id order, then check the token against the latest lease row under
 * a snapshot taken after the lock was granted.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "courier.h"

#define COURIER_LOCKTAG_MESSAGE 0x4d51

static void
message_locktag(LOCKTAG *tag, int64 msg_id)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) ((uint64) msg_id >> 32),
						 (uint32) msg_id, COURIER_LOCKTAG_MESSAGE);
}

/*
 * courier_lock_message
 *		Take the message lock until the end of the transaction; without wait,
 *		return false when another session holds it.
 */
bool
courier_lock_message(int64 msg_id, bool wait)
{
	LOCKTAG		tag;

	message_locktag(&tag, msg_id);
	return LockAcquire(&tag, ExclusiveLock, false, !wait) != LOCKACQUIRE_NOT_AVAIL;
}

void
courier_unlock_message(int64 msg_id)
{
	LOCKTAG		tag;

	message_locktag(&tag, msg_id);
	LockRelease(&tag, ExclusiveLock, false);
}

static bool
parse_hex(const char *s, int len, uint64 *result)
{
	uint64		v = 0;

	if (len < 1 || len > 16)
		return false;
	for (int i = 0; i < len; i++)
	{
		char		c = s[i];
		int			d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else
			return false;
		v = (v << 4) | d;
	}
	*result = v;
	return true;
}

/*
 * courier_parse_receipt
 *		Split a receipt into message id and token; malformed ones are refused.
 */
void
courier_parse_receipt(const char *receipt, int64 *msg_id, int64 *token)
{
	const char *dot = strchr(receipt, '.');
	uint64		id;
	uint64		tok;

	if (dot == NULL ||
		!parse_hex(receipt, dot - receipt, &id) ||
		strlen(dot + 1) != 16 || !parse_hex(dot + 1, 16, &tok) ||
		id == 0 || id > PG_INT64_MAX || tok == 0 || tok > PG_INT64_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid receipt \"%s\"", pnstrdup(receipt, 64)),
				 errdetail("A receipt is the value courier.receive returned in its receipt column.")));
	*msg_id = (int64) id;
	*token = (int64) tok;
}

/*
 * What an ack on a FIFO queue returns per deleted message: its group if the
 * group may have no message left (none but those being acknowledged, as
 * the statement's snapshot sees it), else NULL; groups_forget_if_empty
 * checks again under the group lock.
 */
#define ACK_EMPTIED_GROUP(others) \
	"CASE WHEN EXISTS (SELECT FROM courier.q_%1$d o" \
	"                   WHERE o.group_id = m.group_id AND o." others ")" \
	" THEN NULL ELSE m.group_id END"

/*
 * After an ack on a FIFO queue: waiting receives are woken at commit (the
 * groups may be ready now), and the groups of the messages just deleted
 * (SPI_tuptable, column 1) lose their rows if no message is left
 * (groups.c).
 */
static void
forget_emptied_groups(CourierQueue *queue)
{
	uint64		n = SPI_processed;
	Datum	   *groups = palloc(sizeof(Datum) * (n + 1));
	int			ngroups = 0;

	/* the next message of each group may be deliverable now: wake waiters at commit */
	if (n > 0)
		wait_signal_queue(queue, WAKE_ON_COMMIT);

	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		group = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

		/* messages of a group are mostly adjacent; a repeat only costs a statement */
		if (isnull || (ngroups > 0 &&
					   DatumGetBool(DirectFunctionCall2Coll(texteq, C_COLLATION_OID,
																 groups[ngroups - 1], group))))
			continue;
		groups[ngroups++] = PointerGetDatum(DatumGetTextPCopy(group));
	}
	SPI_freetuptable(SPI_tuptable);
	for (int j = 0; j < ngroups; j++)
		groups_forget_if_empty(queue, groups[j]);
}

static void
stale_receipt(CourierQueue *queue)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("receipt is no longer valid for queue \"%s\"", queue->name),
			 errdetail("The message was acknowledged or released already, or its visibility timeout "
					   "expired and it was received again.")));
}

/*
 * courier.ack(queue_name text, receipt text) RETURNS void
 *		Delete a message the caller holds; a stale receipt is refused.
 *
 * Waits for the message lock (held only by a session receiving or
 * acknowledging that message right now).
 */
PG_FUNCTION_INFO_V1(courier_ack);
Datum
courier_ack(PG_FUNCTION_ARGS)
{
	static Oid	argtypes[2] = {INT8OID, INT8OID};
	text	   *name = courier_arg_text(fcinfo, 0, "queue name");
	char	   *receipt = text_to_cstring(courier_arg_text(fcinfo, 1, "receipt"));
	int64		msg_id;
	int64		token;
	CourierCall call;
	CourierQueue *queue;
	SPIPlanPtr	plan;
	Datum		args[2];

	courier_parse_receipt(receipt, &msg_id, &token);
	courier_enter(&call);
	courier_guard_plans();
	queue = courier_lookup_queue(name, false);
	courier_check_privilege(&call, queue, COURIER_PRIV_RECEIVE);

	courier_lock_message(msg_id, true);
	args[0] = Int64GetDatum(msg_id);
	args[1] = Int64GetDatum(token);
	plan = courier_plan(queue, PLAN_ACK,
						queue->fifo ?
						"WITH l AS (DELETE FROM courier.l_%1$d"
						"            WHERE msg_id = $1 AND token = $2 RETURNING msg_id)"
						" DELETE FROM courier.q_%1$d m USING l WHERE m.msg_id = l.msg_id"
						" RETURNING " ACK_EMPTIED_GROUP("msg_id <> $1") :
						"WITH l AS (DELETE FROM courier.l_%1$d"
						"            WHERE msg_id = $1 AND token = $2 RETURNING msg_id)"
						" DELETE FROM courier.q_%1$d m USING l WHERE m.msg_id = l.msg_id"
						" RETURNING NULL::text",
						2, argtypes);
	(void) courier_execute(plan, args, NULL, false, SPI_OK_DELETE_RETURNING);
	if (SPI_processed != 1)
		stale_receipt(queue);
	if (queue->fifo)
		forget_emptied_groups(queue);

	courier_leave(&call);
	PG_RETURN_VOID();
}

typedef struct ParsedReceipt
{
	int64		msg_id;
	int64		token;
} ParsedReceipt;

static int
cmp_receipt(const void *a, const void *b)
{
	const ParsedReceipt *x = a;
	const ParsedReceipt *y = b;

	if (x->msg_id != y->msg_id)
		return (x->msg_id > y->msg_id) - (x->msg_id < y->msg_id);
	return (x->token > y->token) - (x->token < y->token);
}

/*
 * courier.ack_batch(queue_name text, receipts text[]) RETURNS integer
 *		Acknowledge many messages in one statement; returns how many were
 *		acknowledged.  Stale receipts are skipped; a malformed one fails the
 *		whole call before anything changes.
 *
 * Takes the message locks in ascending id order, so two batches cannot
 * deadlock on each other.
 */
PG_FUNCTION_INFO_V1(courier_ack_batch);
Datum
courier_ack_batch(PG_FUNCTION_ARGS)
{
	static Oid	argtypes[2] = {INT8ARRAYOID, INT8ARRAYOID};
	text	   *name = courier_arg_text(fcinfo, 0, "queue name");
	ArrayType  *receipts;
	Datum	   *elems;
	bool	   *elem_nulls;
	int			n;
	ParsedReceipt *parsed;
	Datum	   *ids;
	Datum	   *tokens;
	CourierCall call;
	CourierQueue *queue;
	SPIPlanPtr	plan;
	Datum		args[2];
	uint64		acked;

	courier_arg_notnull(fcinfo, 1, "receipts");
	receipts = PG_GETARG_ARRAYTYPE_P(1);
	deconstruct_array(receipts, TEXTOID, -1, false, TYPALIGN_INT, &elems, &elem_nulls, &n);
	parsed = palloc(sizeof(ParsedReceipt) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		if (elem_nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("receipt must not be null"),
					 errdetail("Element %d of the receipts array is null.", i + 1)));
		courier_parse_receipt(TextDatumGetCString(elems[i]), &parsed[i].msg_id, &parsed[i].token);
	}
	qsort(parsed, n, sizeof(ParsedReceipt), cmp_receipt);
	ids = palloc(sizeof(Datum) * (n + 1));
	tokens = palloc(sizeof(Datum) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		ids[i] = Int64GetDatum(parsed[i].msg_id);
		tokens[i] = Int64GetDatum(parsed[i].token);
	}

	courier_enter(&call);
	courier_guard_plans();
	queue = courier_lookup_queue(name, false);
	courier_check_privilege(&call, queue, COURIER_PRIV_RECEIVE);
	if (n == 0)
	{
		courier_leave(&call);
		PG_RETURN_INT32(0);
	}

	for (int i = 0; i < n; i++)
		if (i == 0 || parsed[i].msg_id != parsed[i - 1].msg_id)
			courier_lock_message(parsed[i].msg_id, true);

	args[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[1] = PointerGetDatum(construct_array(tokens, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	plan = courier_plan(queue, PLAN_ACK_BATCH,
						queue->fifo ?
						"WITH l AS (DELETE FROM courier.l_%1$d l"
						"            USING ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS r(msg_id, token)"
						"            WHERE l.msg_id = r.msg_id AND l.token = r.token"
						"           RETURNING l.msg_id)"
						" DELETE FROM courier.q_%1$d m USING l WHERE m.msg_id = l.msg_id"
						" RETURNING " ACK_EMPTIED_GROUP("msg_id <> ALL ($1)") :
						"WITH l AS (DELETE FROM courier.l_%1$d l"
						"            USING ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS r(msg_id, token)"
						"            WHERE l.msg_id = r.msg_id AND l.token = r.token"
						"           RETURNING l.msg_id)"
						" DELETE FROM courier.q_%1$d m USING l WHERE m.msg_id = l.msg_id"
						" RETURNING NULL::text",
						2, argtypes);
	(void) courier_execute(plan, args, NULL, false, SPI_OK_DELETE_RETURNING);
	acked = SPI_processed;
	if (queue->fifo)
		forget_emptied_groups(queue);

	courier_leave(&call);
	PG_RETURN_INT32((int32) acked);
}

/*
 * Sets the lease of the message under receipt to end at 'until' (or, when
 * until is 0, after the retry delay of the queue's retry policy); with
 * release, also gives the lease up (token 0), so the receipt becomes stale,
 * and records the reason, if any.
 */
static void
set_visibility(text *name, const char *receipt, TimestampTz until, bool release, text *reason)
{
	static Oid	argtypes[10] = {INT8OID, INT8OID, TIMESTAMPTZOID, INT8OID, TEXTOID,
	INTERVALOID, BOOLOID, INTERVALOID, BOOLOID, TIMESTAMPTZOID};
	int64		msg_id;
	int64		token;
	CourierCall call;
	CourierQueue *queue;
	SPIPlanPtr	plan;
	Datum		args[10];
	char		nulls[10] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

	courier_parse_receipt(receipt, &msg_id, &token);
	courier_enter(&call);
	courier_guard_plans();
	queue = courier_lookup_queue(name, false);
	courier_check_privilege(&call, queue, COURIER_PRIV_RECEIVE);

	courier_lock_message(msg_id, true);
	args[0] = Int64GetDatum(msg_id);
	args[1] = Int64GetDatum(token);
	args[2] = TimestampTzGetDatum(until);
	nulls[2] = until == 0 ? 'n' : ' ';
	args[3] = Int64GetDatum(release ? 0 : token);
	args[4] = PointerGetDatum(reason);
	nulls[4] = reason == NULL ? 'n' : ' ';
	args[5] = IntervalPGetDatum(&queue->retry_delay);
	args[6] = BoolGetDatum(queue->retry_exponential);
	args[7] = IntervalPGetDatum(&queue->retry_max_delay);
	args[8] = BoolGetDatum(queue->retry_jitter);
	args[9] = TimestampTzGetDatum(GetCurrentTimestamp());
	plan = courier_plan(queue, PLAN_SET_VISIBILITY,
						"UPDATE courier.l_%1$d l"
						"   SET invisible_until = COALESCE($3, $10 + "
						COURIER_RETRY_DELAY_SQL("l.receive_count", "$6", "$7", "$8", "$9") "),"
						"       token = $4, last_error = COALESCE($5, l.last_error)"
						" WHERE msg_id = $1 AND token = $2",
						10, argtypes);
	(void) courier_execute(plan, args, nulls, false, SPI_OK_UPDATE);
	if (SPI_processed != 1)
		stale_receipt(queue);
	/* the lease may now end before what waiting receivers planned for */
	wait_signal_queue(queue, WAKE_ON_COMMIT);
	courier_leave(&call);
}

/*
 * courier.change_visibility(queue_name text, receipt text,
 *							 visibility_timeout interval) RETURNS void
 *		Extend or shorten the lease of a held message to now + timeout.
 */
PG_FUNCTION_INFO_V1(courier_change_visibility);
Datum
courier_change_visibility(PG_FUNCTION_ARGS)
{
	text	   *name = courier_arg_text(fcinfo, 0, "queue name");
	char	   *receipt = text_to_cstring(courier_arg_text(fcinfo, 1, "receipt"));
	int64		usecs;

	courier_arg_notnull(fcinfo, 2, "visibility_timeout");
	usecs = courier_interval_usecs(PG_GETARG_INTERVAL_P(2), "visibility_timeout",
								   COURIER_MAX_VISIBILITY_US);
	set_visibility(name, receipt, GetCurrentTimestamp() + usecs, false, NULL);
	PG_RETURN_VOID();
}

/*
 * courier.release(queue_name text, receipt text, delay interval,
 *				   reason text) RETURNS void
 *		Give a held message back: visible again after delay, or when NULL,
 *		after the queue's retry delay.  The reason is kept with the message
 *		and goes with it to the dead-letter queue.
 */
PG_FUNCTION_INFO_V1(courier_release);
Datum
courier_release(PG_FUNCTION_ARGS)
{
	text	   *name = courier_arg_text(fcinfo, 0, "queue name");
	char	   *receipt = text_to_cstring(courier_arg_text(fcinfo, 1, "receipt"));
	TimestampTz until = 0;
	text	   *reason = NULL;

	if (!PG_ARGISNULL(2))
		until = GetCurrentTimestamp() +
			courier_interval_usecs(PG_GETARG_INTERVAL_P(2), "delay", COURIER_MAX_VISIBILITY_US);
	if (PG_NARGS() > 3 && !PG_ARGISNULL(3))
		reason = PG_GETARG_TEXT_PP(3);
	set_visibility(name, receipt, until, true, reason);
	PG_RETURN_VOID();
}

/*
 * courier._try_lock_message(msg_id bigint) RETURNS boolean
 *		The message lock without waiting, for courier.maintain().
 */
PG_FUNCTION_INFO_V1(courier__try_lock_message);
Datum
courier__try_lock_message(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(courier_lock_message(PG_GETARG_INT64(0), false));
}

/*
 * courier._unlock_message(msg_id bigint) RETURNS boolean
 *		Give a message lock taken by courier._try_lock_message back before the
 *		end of the transaction.
 */
PG_FUNCTION_INFO_V1(courier__unlock_message);
Datum
courier__unlock_message(PG_FUNCTION_ARGS)
{
	courier_unlock_message(PG_GETARG_INT64(0));
	PG_RETURN_BOOL(true);
}
